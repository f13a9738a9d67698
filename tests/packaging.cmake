# tests/packaging.cmake — packaging checks, registered with ctest.
# Include from the top-level CMakeLists.txt after enable_testing():
#   include(tests/packaging.cmake)
#   packaging.exports  libshval.so exports exactly the SHVAL_API functions
#   packaging.install  cmake --install into a temp prefix, then build and run
#                      a pkg-config consumer and a find_package() consumer
# Both scripts exit 77 to skip (missing tool, sanitizer build).
if(NOT SHVAL_TEST_TIMEOUT)
  set(SHVAL_TEST_TIMEOUT 120)
endif()
add_test(NAME packaging.exports
  COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/test_exports.sh
          $<TARGET_FILE_DIR:shval> ${PROJECT_SOURCE_DIR})
add_test(NAME packaging.install
  COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/test_install.sh
          ${PROJECT_BINARY_DIR} ${PROJECT_SOURCE_DIR})
set_tests_properties(packaging.exports packaging.install PROPERTIES
  TIMEOUT ${SHVAL_TEST_TIMEOUT} SKIP_RETURN_CODE 77 LABELS packaging)
