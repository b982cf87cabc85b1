/* Host and user names for manifests, keys and locks. */
#include "util/sysinfo.h"

#include <pwd.h>
#include <stdio.h>
#include <unistd.h>

void sys_hostname(char buf[SYS_NAME_MAX]) {
  if (gethostname(buf, SYS_NAME_MAX) != 0)
    snprintf(buf, SYS_NAME_MAX, "unknown");
  buf[SYS_NAME_MAX - 1] = '\0';
}

void sys_username(char buf[SYS_NAME_MAX]) {
  struct passwd pw, *res = NULL;
  char scratch[1024];
  if (getpwuid_r(getuid(), &pw, scratch, sizeof(scratch), &res) != 0 || res == NULL)
    snprintf(buf, SYS_NAME_MAX, "unknown");
  else
    snprintf(buf, SYS_NAME_MAX, "%s", res->pw_name);
}
