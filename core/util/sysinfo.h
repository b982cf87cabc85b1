/* Who and where we run: recorded in snapshots, keys and locks. */
#ifndef CORE_UTIL_SYSINFO_H
#define CORE_UTIL_SYSINFO_H

#include <stddef.h>

#define SYS_NAME_MAX 256

/* This host's name, or "unknown"; always NUL-terminated. */
void sys_hostname(char buf[SYS_NAME_MAX]);
/* The effective user's name, or "unknown"; always NUL-terminated. */
void sys_username(char buf[SYS_NAME_MAX]);

#endif
