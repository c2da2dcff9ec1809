/*
 * fileio.c - bounded whole-file reads and atomic writes (POSIX).
 */
#define _POSIX_C_SOURCE 200809L

#include "fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

ad_status ad__file_read_all(const char *path, size_t max_bytes, void **data, size_t *size, ad_error *err)
{
    if (!path || !data || !size)
        return ad_error_set(err, AD_ERR_NULL, "read: %s is NULL",
                             !path ? "path" : !data ? "data" : "size");
    *data = NULL;
    *size = 0;
    /* O_NONBLOCK: opening a named pipe for reading would otherwise wait for
     * a writer, forever; it is refused below like any file that is not a
     * regular one, and blocking reads are restored for the rest. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return ad_error_set(err, AD_ERR_IO, "read: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    int flags;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ad_error_set(err, AD_ERR_IO, "read: '%s' is not a regular file", path);
    }
    if ((flags = fcntl(fd, F_GETFL)) == -1 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == -1) {
        int e = errno;
        close(fd);
        return ad_error_set(err, AD_ERR_IO, "read: cannot read '%s': %s", path, strerror(e));
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        close(fd);
        return ad_error_set(err, AD_ERR_FORMAT, "read: '%s' has %lld bytes, more than the %zu allowed",
                             path, (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return ad_error_set(err, AD_ERR_NOMEM, "read: cannot allocate %zu bytes for '%s'", n, path);
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
        return ad_error_set(err, AD_ERR_IO, "read: '%s' changed or failed while reading", path);
    }
    *data = buf;
    *size = n;
    return ad_error_set(err, AD_OK, NULL);
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

/* ---- temporary files ---------------------------------------------------------------- */

/* A save of `path` writes "<path>.tmp.XXXXXX" first, X one of the 62 below:
 * the only names remove_stale() ever removes. */
#define TMP_MARK ".tmp."
enum { TMP_MARK_LEN = 5, TMP_RANDOM = 6 };
static const char tmp_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Creates tmp (path + TMP_MARK + 6 free characters) with O_EXCL and mode
 * 0666: the kernel applies the umask, so the file gets the mode fopen()
 * gives a new file (mkstemp's 0600 would survive the rename). */
static int create_temporary(char *tmp, size_t len)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t seed = mix((uint64_t)now.tv_sec ^ ((uint64_t)now.tv_nsec << 20) ^ ((uint64_t)getpid() << 40) ^
                        (uint64_t)(uintptr_t)tmp);
    memcpy(tmp + len, TMP_MARK, TMP_MARK_LEN);
    tmp[len + TMP_MARK_LEN + TMP_RANDOM] = '\0';
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t x = seed = mix(seed);
        for (int i = 0; i < TMP_RANDOM; i++, x /= 62) tmp[len + TMP_MARK_LEN + i] = tmp_chars[x % 62];
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    errno = EEXIST;
    return -1;
}

/* When this process started (Linux: /proc), in seconds since the epoch. */
static int process_start(time_t *out)
{
    char buf[1024];
    long long boot = -1, ticks = -1;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    while (fgets(buf, sizeof buf, f))
        if (sscanf(buf, "btime %lld", &boot) == 1) break;
    fclose(f);
    f = fopen("/proc/self/stat", "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields after the command name, which may hold spaces and ')' */
    char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 22; field++) p = strchr(p + 1, ' ');
    long hz = sysconf(_SC_CLK_TCK);
    if (!p || sscanf(p, " %lld", &ticks) != 1 || boot < 0 || hz <= 0) return 0;
    *out = (time_t)(boot + ticks / hz);
    return 1;
}

/* Removes the temporaries that saves of `path` killed before this process
 * started left behind: regular files (never links or folders) of this user
 * named "<path>.tmp.XXXXXX" and last modified more than two seconds before
 * the start (the boot time /proc gives is whole seconds). A temporary
 * modified since may be a save under way in another process: it stays.
 * Where the start time is unknown nothing is removed. */
static void remove_stale(const char *path)
{
    time_t started;
    if (!process_start(&started)) return;
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0, base_len = strlen(base);
    char dir[4096], file[4096];
    if (dir_len + base_len + TMP_MARK_LEN + TMP_RANDOM >= sizeof file || base_len == 0) return;
    memcpy(dir, dir_len ? path : ".", dir_len ? dir_len : 1);
    dir[dir_len ? dir_len : 1] = '\0';
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        const char *name = e->d_name, *rnd = name + base_len + TMP_MARK_LEN;
        if (strlen(name) != base_len + TMP_MARK_LEN + TMP_RANDOM || memcmp(name, base, base_len) != 0 ||
            memcmp(name + base_len, TMP_MARK, TMP_MARK_LEN) != 0 || strspn(rnd, tmp_chars) != TMP_RANDOM)
            continue;
        memcpy(file, path, dir_len);
        memcpy(file + dir_len, name, strlen(name) + 1);
        struct stat st;
        if (lstat(file, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
            st.st_mtime < started - 2)
            unlink(file);
    }
    closedir(d);
}

ad_status ad__file_write_atomic(const char *path, const void *data, size_t size, ad_error *err)
{
    if (!path || (!data && size > 0))
        return ad_error_set(err, AD_ERR_NULL, "write: %s is NULL", !path ? "path" : "data");
    size_t len = strlen(path);
    char *tmp = malloc(len + TMP_MARK_LEN + TMP_RANDOM + 1);
    if (!tmp) return ad_error_set(err, AD_ERR_NOMEM, "write: out of memory");
    memcpy(tmp, path, len);
    remove_stale(path);
    int fd = create_temporary(tmp, len);
    if (fd < 0) {
        ad_status st = ad_error_set(err, AD_ERR_IO, "write: cannot create a temporary file next to '%s': %s",
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
        return ad_error_set(err, AD_ERR_IO, "write: cannot write '%s': %s", path,
                             strerror(saved_errno));
    }
    free(tmp);
    sync_folder(path);
    return ad_error_set(err, AD_OK, NULL);
}
