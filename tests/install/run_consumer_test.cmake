# ctest script: install the sparq build tree into a temporary prefix, then configure, build and
# run a separate consumer project that uses find_package(sparq CONFIG REQUIRED).
# Inputs (-D): SPARQ_BUILD_DIR, CONSUMER_SOURCE_DIR, WORK_DIR, GENERATOR, CXX_COMPILER,
# CUDA_BIN_DIR (optional: where nvcc lives, so the consumer finds the same CUDA toolkit).
foreach(var SPARQ_BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer_test.cmake: ${var} is not set")
  endif()
endforeach()

set(prefix "${WORK_DIR}/prefix")
set(build "${WORK_DIR}/build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run_step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name} failed (${rc}):\n${out}\n${err}")
  endif()
  message(STATUS "${name}: ok")
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

run_step("install" ${CMAKE_COMMAND} --install "${SPARQ_BUILD_DIR}" --prefix "${prefix}")

set(config_args -S "${CONSUMER_SOURCE_DIR}" -B "${build}" "-DCMAKE_PREFIX_PATH=${prefix}"
    -DCMAKE_BUILD_TYPE=Release)
if(GENERATOR)
  list(APPEND config_args -G "${GENERATOR}")
endif()
if(CXX_COMPILER)
  list(APPEND config_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
if(CUDA_BIN_DIR)
  get_filename_component(cuda_root "${CUDA_BIN_DIR}" DIRECTORY)
  list(APPEND config_args "-DCUDAToolkit_ROOT=${cuda_root}")
endif()
run_step("configure consumer" ${CMAKE_COMMAND} ${config_args})
run_step("build consumer" ${CMAKE_COMMAND} --build "${build}")

find_program(consumer NAMES sparq_consumer PATHS "${build}" NO_DEFAULT_PATH REQUIRED)
run_step("run consumer" "${consumer}")
message(STATUS "consumer output:\n${step_output}")
if(NOT step_output MATCHES "sparq consumer ok")
  message(FATAL_ERROR "consumer output lacks 'sparq consumer ok'")
endif()
