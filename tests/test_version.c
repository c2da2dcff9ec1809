/* The version the headers announce is the version of the library linked. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unroll/version.h>

#include "testsupport.h"

Test(version, library_matches_headers)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", UNROLL_VERSION_MAJOR, UNROLL_VERSION_MINOR,
             UNROLL_VERSION_PATCH);
    cr_assert_str_eq(UNROLL_VERSION_STRING, want);
    cr_assert_str_eq(ad_version(), UNROLL_VERSION_STRING);
    cr_assert_eq(ad_version_number(), UNROLL_VERSION_NUMBER);
    cr_assert_eq(UNROLL_VERSION_NUMBER,
                 UNROLL_VERSION_MAJOR * 10000 + UNROLL_VERSION_MINOR * 100 + UNROLL_VERSION_PATCH);
    cr_assert_str_eq(ad_version(), "0.2.0");
}
