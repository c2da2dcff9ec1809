# examples/char_rnn under mpiexec in the MPI build: the same command line at
# 1 and 2 ranks gives the same weights (f64), a 2-rank checkpoint resumes at
# 1 rank on the same trajectory, and failures end every rank without a hang.
#
#   cmake -DMPIEXEC="mpiexec|--allow-run-as-root|..." -DNP_FLAG=-n -DCHAR_RNN=path
#         -DCLOSE=path/to/ckpt_close -DDATA=corpus.txt -DWORK=dir -DCASE=<name> -P char_rnn_mpi.cmake
#
# MPIEXEC is the launcher and its flags separated by '|'. Every run has a
# 120 s limit: a hang fails the test instead of holding it.

foreach(var MPIEXEC NP_FLAG CHAR_RNN CLOSE DATA WORK CASE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "char_rnn_mpi.cmake needs -D${var}=...")
  endif()
endforeach()
string(REPLACE "|" ";" launcher "${MPIEXEC}")
list(POP_FRONT launcher mpiexec)
file(MAKE_DIRECTORY ${WORK})
set(args --data ${DATA} --hidden 16 --layers 2 --seq 8 --batch 4 --sample 0 --every 3 --dtype f64)

# Runs char_rnn on `np` ranks with ARGN; checks the exit status (a number, or "nonzero").
function(run np expect_rc out_var)
  execute_process(COMMAND ${mpiexec} ${NP_FLAG} ${np} ${launcher} ${CHAR_RNN} ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out TIMEOUT 120)
  message(STATUS "${np} rank(s): char_rnn ${ARGN}\n${out}(exit status ${rc})")
  if(expect_rc STREQUAL "nonzero")
    if(NOT rc MATCHES "^[0-9]+$" OR rc EQUAL 0)
      message(FATAL_ERROR "expected a non-zero exit status, got '${rc}'")
    endif()
  elseif(NOT rc STREQUAL expect_rc)
    message(FATAL_ERROR "expected exit status ${expect_rc}, got '${rc}'")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

function(expect_match text regex)
  if(NOT text MATCHES "${regex}")
    message(FATAL_ERROR "expected the output to match '${regex}'")
  endif()
endfunction()

# The weights (and step, and optimizer count) of two checkpoints agree to 1e-10 relative.
function(expect_close a b)
  execute_process(COMMAND ${CLOSE} ${a} ${b} 1e-10 RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  message(STATUS "${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${a} and ${b} differ")
  endif()
endfunction()

if(CASE STREQUAL "equal_ranks")
  # The same command line at 1 and 2 ranks: the same weights within 1e-10;
  # rank 0 alone prints (one summary line) and writes the CSV.
  file(REMOVE ${WORK}/eq1.ckpt ${WORK}/eq2.ckpt ${WORK}/eq2.csv)
  run(1 0 out ${args} --steps 6 --checkpoint ${WORK}/eq1.ckpt)
  run(2 0 out ${args} --steps 6 --checkpoint ${WORK}/eq2.ckpt --csv ${WORK}/eq2.csv)
  expect_match("${out}" "data-parallel: 2 ranks, 2 streams each\n")
  string(REGEX MATCHALL "trained steps 1\\.\\.6 " lines "${out}")
  list(LENGTH lines n)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "expected one summary line (rank 0's), got ${n}")
  endif()
  file(STRINGS ${WORK}/eq2.csv rows)
  list(LENGTH rows n)
  if(NOT n EQUAL 7)
    message(FATAL_ERROR "eq2.csv: ${n} lines, expected a header and 6 rows")
  endif()
  expect_close(${WORK}/eq1.ckpt ${WORK}/eq2.ckpt)
elseif(CASE STREQUAL "resume_fewer_ranks")
  # 3 updates at 2 ranks, then resumed at 1 rank up to 6: the weights of 6
  # updates at 1 rank in one go, within 1e-10.
  file(REMOVE ${WORK}/straight.ckpt ${WORK}/resumed.ckpt)
  run(1 0 out ${args} --steps 6 --checkpoint ${WORK}/straight.ckpt)
  run(2 0 out ${args} --steps 3 --checkpoint ${WORK}/resumed.ckpt)
  run(1 0 out ${args} --steps 6 --checkpoint ${WORK}/resumed.ckpt --resume=required)
  expect_match("${out}" "resumed from [^\n]*resumed\\.ckpt at step 3\n")
  expect_match("${out}" "trained steps 4\\.\\.6 ")
  expect_close(${WORK}/straight.ckpt ${WORK}/resumed.ckpt)
  # and back: 3 more at 2 ranks from the 1-rank checkpoint, as 9 at 1 rank
  file(REMOVE ${WORK}/straight9.ckpt)
  run(1 0 out ${args} --steps 9 --checkpoint ${WORK}/straight9.ckpt)
  run(2 0 out ${args} --steps 9 --checkpoint ${WORK}/resumed.ckpt --resume=required)
  expect_close(${WORK}/straight9.ckpt ${WORK}/resumed.ckpt)
elseif(CASE STREQUAL "bad_batch")
  # A global batch of 3 on 2 ranks: the same clear message from every rank, status 1, no hang.
  run(2 1 out ${args} --batch 3 --steps 2)
  string(REGEX MATCHALL "char_rnn: --batch 3: [^\n]*3[^\n]*2[^\n]*\n" lines "${out}")
  list(LENGTH lines n)
  if(NOT n EQUAL 2)
    message(FATAL_ERROR "expected the --batch message from both ranks, got ${n}")
  endif()
elseif(CASE STREQUAL "one_rank_fails")
  # Rank 1 cannot read its data file: both ranks stop with status 1, rank 0
  # naming rank 1, and the checkpoint of an earlier run is left as it was.
  set(ckpt ${WORK}/fails.ckpt)
  file(REMOVE ${ckpt})
  run(2 0 out ${args} --steps 3 --checkpoint ${ckpt})
  file(READ ${ckpt} before HEX)
  set(more --hidden 16 --layers 2 --seq 8 --batch 4 --sample 0 --every 3 --dtype f64 --steps 6
           --checkpoint ${ckpt} --resume=required)
  execute_process(COMMAND ${mpiexec} ${NP_FLAG} 1 ${launcher} ${CHAR_RNN} --data ${DATA} ${more}
                          : ${NP_FLAG} 1 ${CHAR_RNN} --data ${WORK}/no_such_file.txt ${more}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out TIMEOUT 120)
  message(STATUS "rank 1 without its data:\n${out}(exit status ${rc})")
  if(NOT rc MATCHES "^[0-9]+$" OR rc EQUAL 0)
    message(FATAL_ERROR "expected a non-zero exit status, got '${rc}'")
  endif()
  expect_match("${out}" "no_such_file\\.txt")
  expect_match("${out}" "char_rnn: rank 1 failed \\([A-Z_]+\\): it could not start")
  file(READ ${ckpt} after HEX)
  if(NOT before STREQUAL after)
    message(FATAL_ERROR "the failed run changed the checkpoint")
  endif()
else()
  message(FATAL_ERROR "char_rnn_mpi.cmake: unknown CASE '${CASE}'")
endif()
