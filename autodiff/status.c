#include "status.h"

#include <stdarg.h>
#include <stdio.h>

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
            vsnprintf(err->msg, sizeof err->msg, fmt, ap);
            va_end(ap);
        }
    }
    return code;
}
