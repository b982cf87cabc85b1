/* What can be known about a pipeline's next run before it starts: secret
 * references it could not resolve here (an env: variable that is not set,
 * a file: that cannot be read). `engine validate` and `engine serve` (at
 * start and at each reload) report them as warnings: the file is valid,
 * but a run in this environment would fail. */
#ifndef CORE_OPS_PREFLIGHT_H
#define CORE_OPS_PREFLIGHT_H

#include <jansson.h>

#include "config/pipeline.h"

/* A new array of sentences ("stages.encrypt.passphrase: environment
 * variable X is not set; a run would fail"), empty when every reference
 * resolves. Values are never read into the sentences. */
json_t *preflight_secret_warnings(const struct pipeline *p);

#endif
