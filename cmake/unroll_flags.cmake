# unroll_target_flags(<target>): the compile flags of unroll's own targets,
# applied per target so that a parent project's flags stay untouched.
#
# Never -ffast-math / -Ofast: they break isnan(), which anomaly mode and the
# clipper's refusal of non-finite gradients depend on.
set(UNROLL_WARNINGS -Wall -Wextra -Wshadow -Wstrict-prototypes -Wvla)
if(UNROLL_WERROR)
  list(APPEND UNROLL_WARNINGS -Werror)
endif()
set(UNROLL_SANITIZE_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all
    -fno-omit-frame-pointer)

function(unroll_target_flags target)
  # Strict C11 (no GNU extensions): besides portability, ISO mode keeps the
  # compiler from contracting a*b+c into fused multiply-adds outside the
  # files that ask for it, so results match the reference loops bit for bit.
  set_target_properties(${target} PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON
                        C_EXTENSIONS OFF)
  target_compile_options(${target} PRIVATE ${UNROLL_WARNINGS}
    # Optimised builds use -O3: the kernels rely on the loop vectoriser.
    $<$<NOT:$<CONFIG:Debug>>:-O3>)
  if(UNROLL_NATIVE)
    target_compile_options(${target} PRIVATE -march=native)
  endif()
  if(UNROLL_SANITIZE)
    target_compile_options(${target} PRIVATE ${UNROLL_SANITIZE_FLAGS})
    # Whatever links a sanitized library needs the sanitizer runtimes.
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "EXECUTABLE")
      target_link_options(${target} PRIVATE -fsanitize=address,undefined)
    else()
      target_link_options(${target} PUBLIC -fsanitize=address,undefined)
    endif()
  endif()
endfunction()
