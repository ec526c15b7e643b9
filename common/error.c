/* struct pvm_error: an operation's first error (common/common.h). */
#include "common/common.h"

#include <stdio.h>
#include <string.h>

void pvm_error_init(struct pvm_error *e)
{
	e->rc = 0;
	e->msg[0] = '\0';
}

int pvm_error_vset(struct pvm_error *e, int rc, const char *fmt, va_list ap)
{
	if (e->rc)
		return e->rc;
	e->rc = rc < 0 ? rc : -EIO;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	pvm_err("%s", e->msg);
	return e->rc;
}

int pvm_error_set(struct pvm_error *e, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rc = pvm_error_vset(e, rc, fmt, ap);
	va_end(ap);
	return rc;
}

int pvm_error_copy(const struct pvm_error *e, char *why, size_t len)
{
	if (why && len)
		snprintf(why, len, "%s", e->msg);
	return e->rc;
}
