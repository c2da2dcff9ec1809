# Install rules: headers under <prefix>/include/unroll, the libraries, the CMake
# package (find_package(unroll) gives unroll::autodiff and unroll::nn),
# unroll.pc, the docs, and the Debian package (cpack -G DEB).
include(CMakePackageConfigHelpers)

# A static and a shared build can be installed into one prefix (the Debian
# package holds both): each writes its own targets file, and unrollConfig.cmake
# picks one (see cmake/unrollConfig.cmake.in).
if(BUILD_SHARED_LIBS)
  set(UNROLL_LIB_KIND shared)
else()
  set(UNROLL_LIB_KIND static)
endif()
set(UNROLL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/unroll)

install(TARGETS ${UNROLL_LIBS} EXPORT unroll_targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
if(TARGET unroll-ckpt)
  install(TARGETS unroll-ckpt RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(EXPORT unroll_targets NAMESPACE unroll::
        FILE unroll-${UNROLL_LIB_KIND}-targets.cmake DESTINATION ${UNROLL_CMAKE_DIR})

# The public headers; internal.h (of both folders), clones.h, fileio.h, kernels.h, split.h, op_list.h and tuning.h are the
# libraries' own.
install(DIRECTORY autodiff/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/unroll/autodiff
        FILES_MATCHING PATTERN "*.h" PATTERN "internal.h" EXCLUDE PATTERN "fileio.h" EXCLUDE
        PATTERN "kernels.h" EXCLUDE PATTERN "op_list.h" EXCLUDE PATTERN "tuning.h" EXCLUDE
        PATTERN "clones.h" EXCLUDE PATTERN "split.h" EXCLUDE)
set(UNROLL_NN_HEADER_EXCLUDE)
if(NOT UNROLL_WITH_MPI) # nn/dist.h only with the library that implements it
  set(UNROLL_NN_HEADER_EXCLUDE PATTERN "dist.h" EXCLUDE)
endif()
install(DIRECTORY nn/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/unroll/nn
        FILES_MATCHING PATTERN "*.h" PATTERN "internal.h" EXCLUDE ${UNROLL_NN_HEADER_EXCLUDE})
install(FILES ${UNROLL_BUILD_INCLUDE}/unroll/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/unroll)

configure_package_config_file(cmake/unrollConfig.cmake.in
  ${PROJECT_BINARY_DIR}/unrollConfig.cmake INSTALL_DESTINATION ${UNROLL_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/unrollConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/unrollConfig.cmake
        ${PROJECT_BINARY_DIR}/unrollConfigVersion.cmake DESTINATION ${UNROLL_CMAKE_DIR})

# pkg-config: -lm, and the optional BLAS and OpenMP runtimes, are private
# (needed only when linking the static libraries).
set(UNROLL_PC_LIBS_PRIVATE "-lm")
set(UNROLL_PC_REQUIRES_PRIVATE "")
if(UNROLL_WITH_BLAS)
  set(UNROLL_PC_REQUIRES_PRIVATE "openblas")
endif()
if(UNROLL_WITH_MPI)
  string(APPEND UNROLL_PC_REQUIRES_PRIVATE " mpi-c")
endif()
if(UNROLL_WITH_OPENMP)
  string(APPEND UNROLL_PC_LIBS_PRIVATE " ${OpenMP_C_FLAGS}")
endif()
# The prefix is found from the .pc file's own place, so an install moved with
# `cmake --install --prefix`, DESTDIR or a package stays usable.
file(RELATIVE_PATH UNROLL_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" UNROLL_PC_TO_PREFIX "${UNROLL_PC_TO_PREFIX}")
configure_file(cmake/unroll.pc.in ${PROJECT_BINARY_DIR}/unroll.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/unroll.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

install(FILES README.md CHANGELOG.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR} FILES_MATCHING PATTERN "*.md")

set(CPACK_PACKAGE_NAME unroll-dev)
set(CPACK_PACKAGE_VENDOR "unroll")
set(CPACK_PACKAGE_CONTACT "unroll developers <unroll@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "reverse-mode automatic differentiation in C11 for recurrent networks (headers, libraries)")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libc6")
include(CPack)
