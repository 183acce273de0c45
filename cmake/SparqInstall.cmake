# Install the headers and a package config so `find_package(sparq CONFIG)` works.
include(CMakePackageConfigHelpers)

install(DIRECTORY include/sparq DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS sparq EXPORT sparqTargets)
install(EXPORT sparqTargets NAMESPACE sparq:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sparq)
configure_package_config_file(cmake/sparqConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/sparqConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sparq)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/sparqConfigVersion.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/sparqConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/sparqConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sparq)
