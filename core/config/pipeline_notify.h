/* The parser of one `notify:` entry (config/pipeline_notify.c), for
 * config/pipeline.c. */
#ifndef CORE_CONFIG_PIPELINE_NOTIFY_H
#define CORE_CONFIG_PIPELINE_NOTIFY_H

#include "config/pipeline.h"
#include "config/schema.h"
#include "config/yaml_tree.h"

/* Parses entry n (option name opt, "notify[0]") into nt, with its defaults;
 * problems go to c. */
void pipeline_parse_notify_entry(struct cfg *c, const struct ytree_node *n, const char *opt,
                                 struct pipeline_notify *nt);

#endif
