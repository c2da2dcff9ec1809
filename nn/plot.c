/*
 * plot.c - starts gnuplot without a shell and reports how it ended.
 */
#define _POSIX_C_SOURCE 200809L
#include "plot.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ; /* gnuplot gets our environment (PATH, GNUPLOT_LIB, ...) */

ad_status nn_gnuplot_quote(const char *s, char *out, size_t size)
{
    if (!s || !out) return AD_ERR_NULL;
    size_t j = 0;
    for (; *s; s++) {
        if (j + 3 > size) return AD_ERR_ARG;
        if (*s == '\'') out[j++] = '\'';
        out[j++] = *s;
    }
    if (j + 1 > size) return AD_ERR_ARG;
    out[j] = '\0';
    return AD_OK;
}

/* Reads the child's error output to its end (so it cannot block on a full
 * pipe), keeping the first size-1 bytes, newlines turned into spaces. */
static void drain(int fd, char *keep, size_t size)
{
    size_t n = 0;
    char buf[512];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (ssize_t i = 0; i < r && n + 1 < size; i++) keep[n++] = buf[i] == '\n' ? ' ' : buf[i];
    }
    while (n > 0 && keep[n - 1] == ' ') n--;
    keep[n] = '\0';
}

ad_status nn_gnuplot_run(const char *script, ad_error *err)
{
    if (!script) return ad_error_set(err, AD_ERR_NULL, "gnuplot: the script is NULL");
    int fds[2];
    if (pipe(fds) != 0) return ad_error_set(err, AD_ERR_IO, "gnuplot: pipe: %s", strerror(errno));
    /* neither end leaks into processes other threads start meanwhile; the
     * child's copy on fd 2 (dup2) is not close-on-exec */
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    posix_spawn_file_actions_t fa;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc == 0) rc = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    if (rc == 0) rc = posix_spawn_file_actions_addclose(&fa, fds[0]);
    char prog[] = "gnuplot", dash_e[] = "-e";
    char *args[] = {prog, dash_e, (char *)script, NULL};
    pid_t pid = 0;
    if (rc == 0) rc = posix_spawnp(&pid, prog, &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        if (rc == ENOENT)
            return ad_error_set(err, AD_ERR_NOT_FOUND, "gnuplot not found on the PATH (install gnuplot to get the plot)");
        return ad_error_set(err, AD_ERR_IO, "gnuplot: cannot start it: %s", strerror(rc));
    }
    char msg[160];
    drain(fds[0], msg, sizeof msg);
    close(fds[0]);
    int ws = 0;
    pid_t w;
    do w = waitpid(pid, &ws, 0);
    while (w < 0 && errno == EINTR);
    if (w != pid) return ad_error_set(err, AD_ERR_IO, "gnuplot: waitpid: %s", strerror(errno));
    /* glibc's posix_spawnp reports a missing program as exit status 127 on some versions */
    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 127 && !msg[0])
        return ad_error_set(err, AD_ERR_NOT_FOUND, "gnuplot not found on the PATH (install gnuplot to get the plot)");
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        return ad_error_set(err, AD_ERR_IO, "gnuplot failed (%s %d): %s", WIFEXITED(ws) ? "exit status" : "signal",
                            WIFEXITED(ws) ? WEXITSTATUS(ws) : WIFSIGNALED(ws) ? WTERMSIG(ws) : 0,
                            msg[0] ? msg : "no message");
    return ad_error_set(err, AD_OK, NULL);
}
