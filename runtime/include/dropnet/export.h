#ifndef DROPNET_EXPORT_H
#define DROPNET_EXPORT_H

#if defined(__GNUC__)
#define DN_API __attribute__((visibility("default")))
#else
#define DN_API
#endif

/* C++ users include the headers as they are. */
#ifdef __cplusplus
#define DN_BEGIN_DECLS extern "C" {
#define DN_END_DECLS }
#else
#define DN_BEGIN_DECLS
#define DN_END_DECLS
#endif

#endif
