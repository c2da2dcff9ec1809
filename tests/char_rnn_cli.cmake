# The command-line behaviour of examples/char_rnn.c that a unit test cannot
# reach: exit statuses, messages, and the files a run and a resumed run leave.
#
#   cmake -DCHAR_RNN=path/to/char_rnn -DDATA=examples/data/corpus.txt -DWORK=dir
#         -DCASE=<name> -P char_rnn_cli.cmake
#
# Each case removes the files it uses first, so it starts from the same state
# however often it runs. A failed check ends the script with FATAL_ERROR.

foreach(var CHAR_RNN DATA WORK CASE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "char_rnn_cli.cmake needs -D${var}=...")
  endif()
endforeach()
file(MAKE_DIRECTORY ${WORK})
set(small --data ${DATA} --hidden 16 --seq 8 --batch 2 --sample 0)

# Runs char_rnn with ARGN; stores its merged stdout and stderr in out_var and
# checks that the exit status is `expect_rc` (a number, or "nonzero").
function(run_char_rnn expect_rc out_var)
  execute_process(COMMAND ${CHAR_RNN} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  message(STATUS "char_rnn ${ARGN}\n${out}(exit status ${rc})")
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

function(expect_no_match text regex)
  if(text MATCHES "${regex}")
    message(FATAL_ERROR "expected the output not to match '${regex}' (it does: '${CMAKE_MATCH_0}')")
  endif()
endfunction()

# Checks the loss CSV: the header, then one row per step 1..last in order
# (no gap, no repeat), val_loss filled exactly at the multiples of `every`
# and at the last step.
function(expect_csv path last every)
  file(STRINGS ${path} lines)
  list(POP_FRONT lines header)
  if(NOT header STREQUAL "step,train_loss,val_loss,lr,tokens_per_s")
    message(FATAL_ERROR "${path}: unexpected header '${header}'")
  endif()
  list(LENGTH lines n)
  if(NOT n EQUAL last)
    message(FATAL_ERROR "${path}: ${n} rows, expected ${last} (one per step):\n${lines}")
  endif()
  set(want 1)
  foreach(line IN LISTS lines)
    if(NOT line MATCHES "^([0-9]+),([0-9.]+),([0-9.]*),([0-9.e+-]+),([0-9]+)$")
      message(FATAL_ERROR "${path}: malformed row '${line}'")
    endif()
    set(val "${CMAKE_MATCH_3}") # an empty group leaves CMAKE_MATCH_3 unset
    if(NOT CMAKE_MATCH_1 EQUAL want)
      message(FATAL_ERROR "${path}: row '${line}' where step ${want} was expected")
    endif()
    math(EXPR rem "${want} % ${every}")
    if((rem EQUAL 0 OR want EQUAL last) AND "${val}" STREQUAL "")
      message(FATAL_ERROR "${path}: step ${want} has no validation loss: '${line}'")
    elseif(NOT (rem EQUAL 0 OR want EQUAL last) AND NOT "${val}" STREQUAL "")
      message(FATAL_ERROR "${path}: step ${want} has a validation loss it should not: '${line}'")
    endif()
    math(EXPR want "${want} + 1")
  endforeach()
endfunction()

if(CASE STREQUAL "resume_missing")
  # --resume without a checkpoint yet: a note, a fresh start, exit 0.
  set(ckpt ${WORK}/resume_missing.ckpt)
  file(REMOVE ${ckpt})
  run_char_rnn(0 out ${small} --steps 2 --checkpoint ${ckpt} --resume)
  expect_match("${out}" "no checkpoint at [^\n]*resume_missing\\.ckpt yet: starting fresh")
  expect_match("${out}" "trained steps 1\\.\\.2 ")
  if(NOT EXISTS ${ckpt})
    message(FATAL_ERROR "the fresh run wrote no checkpoint")
  endif()
elseif(CASE STREQUAL "resume_required_missing")
  # --resume=required without a checkpoint: one line, a non-zero status, nothing trained.
  set(ckpt ${WORK}/resume_required.ckpt)
  file(REMOVE ${ckpt})
  run_char_rnn(1 out ${small} --steps 2 --checkpoint ${ckpt} --resume=required)
  expect_match("${out}" "^char_rnn: --resume=required: no checkpoint at '[^\n]*resume_required\\.ckpt'\n$")
  if(EXISTS ${ckpt})
    message(FATAL_ERROR "a failed run wrote a checkpoint")
  endif()
elseif(CASE STREQUAL "bad_values")
  # Each bad value is refused with status 2 and a message giving the value and what is valid.
  run_char_rnn(2 out ${small} --hidden 0)
  expect_match("${out}" "^char_rnn: --hidden '0': expected a whole number in \\[1, 4096\\]\n$")
  run_char_rnn(2 out ${small} --lr fast)
  expect_match("${out}" "^char_rnn: --lr 'fast': expected a number in \\[0, 10\\]\n$")
  run_char_rnn(2 out ${small} --steps 12x)
  expect_match("${out}" "^char_rnn: --steps '12x': expected a whole number in \\[0, 1000000000\\]\n$")
  run_char_rnn(2 out ${small} --cell transformer)
  expect_match("${out}" "^char_rnn: --cell 'transformer': expected one of rnn\\|lstm\\|gru\n$")
  run_char_rnn(2 out ${small} --batch)
  expect_match("${out}" "^char_rnn: --batch needs a value: a whole number in \\[1, 4096\\]\n$")
  run_char_rnn(2 out ${small} --resume=maybe --checkpoint ${WORK}/x.ckpt)
  expect_match("${out}" "^char_rnn: '--resume=maybe': expected --resume or --resume=required\n$")
  run_char_rnn(1 out ${small} --batch 4096)
  expect_match("${out}" "corpus\\.txt' has [0-9]+ training characters; --batch 4096 --seq 8 need at least [0-9]+\n$")
elseif(CASE STREQUAL "resume_continues")
  # 12 steps, then a resume to 24 with the same CSV: rows 1..24 once each,
  # validation at every 6th step, the smoothed loss carried on from the
  # resumed model's own losses (not from 0), then a resume with nothing left
  # to do that reports no rate.
  set(ckpt ${WORK}/resume_continues.ckpt)
  set(csv ${WORK}/resume_continues.csv)
  file(REMOVE ${ckpt} ${csv})
  set(args --data ${DATA} --hidden 32 --layers 2 --seq 16 --batch 4 --sample 0 --every 6
           --checkpoint ${ckpt} --csv ${csv})
  run_char_rnn(0 out ${args} --steps 12)
  expect_match("${out}" "step +6  smoothed train loss [0-9.]+  validation loss [0-9]\\.[0-9]+\n")
  expect_csv(${csv} 12 6)
  # Rows written after the checkpoint by a run that then died, the last one cut short:
  # the resumed run must drop them, not repeat their steps.
  file(APPEND ${csv} "13,9.000000,,0.005,1\n14,9.000000,,0.0")
  run_char_rnn(0 out ${args} --steps 24 --resume=required)
  expect_match("${out}" "resumed from [^\n]*resume_continues\\.ckpt at step 12\n")
  # the first update of the resumed run starts the average: ~3 nats for 42 characters, not ~0.15
  expect_match("${out}" "step +13  smoothed train loss [1-9]\\.[0-9]+\n")
  expect_match("${out}" "trained steps 13\\.\\.24 in [0-9.]+ s \\([1-9][0-9]* chars/s\\); smoothed train loss [1-9]\\.[0-9]+, validation loss [0-9]\\.[0-9]+\n")
  expect_csv(${csv} 24 6)
  file(READ ${csv} before)
  run_char_rnn(0 out ${args} --steps 24 --resume)
  expect_match("${out}" "nothing to train: at step 24 of --steps 24; validation loss [0-9]\\.[0-9]+\n")
  expect_no_match("${out}" "chars/s")
  file(READ ${csv} after)
  if(NOT before STREQUAL after)
    message(FATAL_ERROR "a run with nothing to train changed the CSV")
  endif()
elseif(CASE STREQUAL "plot_quoted_path")
  # gnuplot runs without a shell: quotes and $ in the path reach it intact.
  set(dir "${WORK}/it's a \"plot\" $HOME")
  set(csv "${dir}/loss.csv")
  file(REMOVE_RECURSE "${dir}")
  file(MAKE_DIRECTORY "${dir}")
  run_char_rnn(0 out ${small} --steps 3 --csv "${csv}")
  find_program(GNUPLOT gnuplot)
  if(NOT GNUPLOT)
    expect_match("${out}" "loss curve: gnuplot is not installed, plot skipped")
    message("SKIPPED: gnuplot is not installed, so the plot itself is not checked")
  else()
    expect_match("${out}" "loss curve: [^\n]*it's a \"plot\" \\$HOME/loss\\.csv\\.png\n")
    if(NOT EXISTS "${csv}.png")
      message(FATAL_ERROR "gnuplot wrote no ${csv}.png")
    endif()
  endif()
else()
  message(FATAL_ERROR "char_rnn_cli.cmake: unknown CASE '${CASE}'")
endif()
