#ifndef DROPNET_EXPORT_H
#define DROPNET_EXPORT_H

#if defined(__GNUC__)
#define DN_API __attribute__((visibility("default")))
#else
#define DN_API
#endif

#endif
