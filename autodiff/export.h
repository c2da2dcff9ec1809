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

/**
 * @def AD_API
 * Starts every public declaration of unroll_autodiff: default visibility, so
 * that a shared build exports it (nothing on compilers without visibility).
 */
#if defined(__GNUC__) || defined(__clang__)
#define AD_API __attribute__((visibility("default")))
#else
#define AD_API
#endif
/** Starts every public declaration of unroll_nn, as AD_API does for the engine. */
#define NN_API AD_API

#endif
