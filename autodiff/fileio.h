/*
 * fileio.h - whole-file reads with a size bound, and crash-safe writes.
 * Never installed: the library's own file formats (.npy, DOT, checkpoints,
 * safetensors) are its only users. A shared build of unroll_nn compiles its
 * own hidden copy of fileio.c, since unroll_autodiff does not export these.
 *
 * ad__file_write_atomic() writes to a temporary file in the same folder,
 * flushes it to disk, renames it over the target and flushes the folder, so
 * a crash leaves either the old file or the new one, never a mix. .npy files
 * and checkpoints are saved through it. The temporary file is named
 * "<path>.tmp.XXXXXX"; one left by a save that was killed is removed by the
 * next save of the same path (see docs/formats.md for the exact rule).
 */
#ifndef UNROLL_AD_FILEIO_H
#define UNROLL_AD_FILEIO_H

#include <stddef.h>

#include "status.h"

/*
 * Reads the whole file at `path` into a new malloc'd buffer (*data, to be
 * freed by the caller) of *size bytes. Files larger than `max_bytes` are an
 * AD_ERR_FORMAT error before anything is allocated; anything but a regular
 * file (a folder, a named pipe, a device) is AD_ERR_IO at once, without
 * waiting on it. Errors: AD_ERR_NULL, AD_ERR_IO, AD_ERR_FORMAT, AD_ERR_NOMEM.
 */
ad_status ad__file_read_all(const char *path, size_t max_bytes, void **data, size_t *size, ad_error *err);

/*
 * Replaces the file at `path` with `size` bytes of `data` atomically (see the
 * top of this header). The new file has the mode fopen() would give it, 0666
 * less the umask. On failure the previous file is untouched and no
 * temporary file is left behind. Errors: AD_ERR_NULL, AD_ERR_IO.
 */
ad_status ad__file_write_atomic(const char *path, const void *data, size_t size, ad_error *err);

#endif
