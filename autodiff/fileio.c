/*
 * fileio.c - bounded whole-file reads and atomic writes (POSIX).
 */
#define _POSIX_C_SOURCE 200809L

#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

ad_status ad_file_read_all(const char *path, size_t max_bytes, void **data, size_t *size,
                           ad_error *err)
{
    if (!path || !data || !size)
        return ad__set_error(err, AD_ERR_NULL, "read: %s is NULL",
                             !path ? "path" : !data ? "data" : "size");
    *data = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return ad__set_error(err, AD_ERR_IO, "read: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ad__set_error(err, AD_ERR_IO, "read: '%s' is not a regular file", path);
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        close(fd);
        return ad__set_error(err, AD_ERR_FORMAT, "read: '%s' has %lld bytes, more than the %zu allowed",
                             path, (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return ad__set_error(err, AD_ERR_NOMEM, "read: cannot allocate %zu bytes for '%s'", n, path);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        free(buf);
        return ad__set_error(err, AD_ERR_IO, "read: '%s' changed or failed while reading", path);
    }
    *data = buf;
    *size = n;
    return ad__set_error(err, AD_OK, NULL);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return 0;
        p += w;
        n -= (size_t)w;
    }
    return 1;
}

/* fsync of the folder holding path, so the rename itself is durable. */
static void sync_folder(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        strcpy(dir, ".");
    } else {
        size_t len = (size_t)(slash - path);
        if (len == 0) len = 1; /* "/file" */
        if (len >= sizeof dir) return;
        memcpy(dir, path, len);
        dir[len] = '\0';
    }
    int fd = open(dir, O_RDONLY);
    if (fd < 0) return;
    fsync(fd);
    close(fd);
}

ad_status ad_file_write_atomic(const char *path, const void *data, size_t size, ad_error *err)
{
    if (!path || (!data && size > 0))
        return ad__set_error(err, AD_ERR_NULL, "write: %s is NULL", !path ? "path" : "data");
    size_t len = strlen(path);
    char *tmp = malloc(len + 16);
    if (!tmp) return ad__set_error(err, AD_ERR_NOMEM, "write: out of memory");
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        ad_status st = ad__set_error(err, AD_ERR_IO, "write: cannot create a temporary file next to '%s': %s",
                                     path, strerror(errno));
        free(tmp);
        return st;
    }
    int ok = write_all(fd, data, size) && fsync(fd) == 0;
    int saved_errno = errno;
    ok = (close(fd) == 0) && ok;
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        saved_errno = errno;
    }
    if (!ok) {
        unlink(tmp);
        free(tmp);
        return ad__set_error(err, AD_ERR_IO, "write: cannot write '%s': %s", path,
                             strerror(saved_errno));
    }
    free(tmp);
    sync_folder(path);
    return ad__set_error(err, AD_OK, NULL);
}
