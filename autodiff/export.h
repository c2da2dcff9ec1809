/**
 * @file
 * export.h - the markers of the libraries' public symbols.
 *
 * The libraries are compiled with hidden visibility, so a shared build
 * exports only the declarations marked here: AD_API for unroll_autodiff and
 * NN_API for unroll_nn. Internal helpers (ad__*) stay inside the library.
 */
#ifndef UNROLL_AD_EXPORT_H
#define UNROLL_AD_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define AD_API __attribute__((visibility("default")))
#else
#define AD_API
#endif
#define NN_API AD_API

#endif
