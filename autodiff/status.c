#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *ad_status_name(ad_status s)
{
    switch (s) {
#define AD__STATUS_NAME(code, value, desc) \
    case code: return #code;
        AD_STATUS_LIST(AD__STATUS_NAME)
#undef AD__STATUS_NAME
    default: return "AD_UNKNOWN";
    }
}

const char *ad_status_str(ad_status s)
{
    switch (s) {
#define AD__STATUS_DESC(code, value, desc) \
    case code: return desc;
        AD_STATUS_LIST(AD__STATUS_DESC)
#undef AD__STATUS_DESC
    default: return "unknown status";
    }
}

const char *ad_version(void) { return UNROLL_VERSION_STRING; }

int ad_version_number(void) { return UNROLL_VERSION_NUMBER; }

ad_status ad_error_set(ad_error *err, ad_status code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        err->msg[0] = '\0';
        if (fmt) {
            va_list ap;
            va_start(ap, fmt);
            ad__format_message(err->msg, sizeof err->msg, fmt, ap);
            va_end(ap);
        }
    }
    return code;
}

void ad__format_message(char *msg, size_t cap, const char *fmt, va_list ap)
{
    static const char mark[] = "\xe2\x80\xa6"; /* U+2026, three bytes of UTF-8 */
    const size_t m = sizeof mark - 1, look_back = 64;
    if (cap == 0) return;
    int n = vsnprintf(msg, cap, fmt, ap);
    if (n < 0) msg[0] = '\0';
    if (n < 0 || (size_t)n < cap || cap <= m + 1) return;
    /* msg holds the first cap - 1 bytes; keep text up to a space that leaves
     * room for the mark, or (a word longer than look_back) cut the word at a
     * character boundary rather than drop the whole line. */
    size_t keep = cap - 1 - m, cut = keep;
    while (cut > 0 && keep - cut < look_back && msg[cut] != ' ') cut--;
    if (msg[cut] != ' ') {
        cut = keep;
        while (cut > 0 && ((unsigned char)msg[cut] & 0xC0) == 0x80) cut--;
    }
    while (cut > 0 && msg[cut - 1] == ' ') cut--;
    memcpy(msg + cut, mark, m + 1);
}
