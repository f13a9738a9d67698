# tests/cli.cmake: the shval(1) command-line test, run by ctest.
# Include it once enable_testing() has run and the shval_cli target exists,
# e.g. from the top-level CMakeLists.txt, right after enable_testing():
#     include(tests/cli.cmake OPTIONAL)
# Paths are relative to this file, so including it from tests/CMakeLists.txt
# works too.  Needs bash, jq and python3 (make deps installs them).
if(TARGET shval_cli)
  add_test(NAME cli_test
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/cli_test.sh
            $<TARGET_FILE:shval_cli>)
  # The script also loads libshval.so from the binary's directory (ctypes
  # helpers: NUL bytes, a lock owner that dies, a dead temporary segment);
  # it skips those checks when that library is missing.
  set_tests_properties(cli_test PROPERTIES TIMEOUT 300)
endif()
