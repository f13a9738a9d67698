# tests/faults.cmake — link options of tests/test_faults.c: the system calls
# the library makes are wrapped by a shim inside the test (fault injection).
# Include from the top-level CMakeLists.txt after the test targets exist:
#   include(tests/faults.cmake)
if(TARGET test_faults)
  set(SHVAL_FAULT_WRAPS open posix_fallocate mmap memfd_create linkat link
      fstat pread fcntl fchmod syscall calloc malloc)
  set(_shval_wrap_opts "")
  foreach(f ${SHVAL_FAULT_WRAPS})
    list(APPEND _shval_wrap_opts "LINKER:--wrap=${f}")
  endforeach()
  target_link_options(test_faults PRIVATE ${_shval_wrap_opts})
endif()
