/*
 * The control protocol between `pvmig` and its local `pvmigd`: records of
 * key=value strings over a unix stream socket (docs/control.md).
 *
 *   +----------------+------+-----+----+-------+----+-----+----+-------+
 *   | length (u32 LE)| kind | key | \0 | value | \0 | key | \0 | ...   |
 *   +----------------+------+-----+----+-------+----+-----+----+-------+
 *   length counts kind + fields, at most PVM_CTL_FRAME_MAX.
 */
#include "migrate/internal.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void pvm_kv_init(struct pvm_kv *kv)
{
	kv->n = 0;
}

void pvm_kv_dispose(struct pvm_kv *kv)
{
	for (size_t i = 0; i < kv->n; i++) {
		free(kv->key[i]);
		free(kv->val[i]);
	}
	kv->n = 0;
}

static bool valid_key(const char *k, size_t len)
{
	if (len == 0 || len > PVM_KV_KEY_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = k[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

static int kv_add_raw(struct pvm_kv *kv, const char *key, size_t klen,
		      const char *val, size_t vlen)
{
	if (!valid_key(key, klen))
		return -EINVAL;
	if (kv->n >= PVM_KV_MAX_FIELDS || vlen > PVM_KV_VALUE_MAX ||
	    memchr(val, '\0', vlen))
		return -E2BIG;
	kv->key[kv->n] = strndup(key, klen);
	kv->val[kv->n] = strndup(val, vlen);
	if (!kv->key[kv->n] || !kv->val[kv->n]) {
		free(kv->key[kv->n]);
		free(kv->val[kv->n]);
		return -ENOMEM;
	}
	kv->n++;
	return 0;
}

int pvm_kv_add(struct pvm_kv *kv, const char *key, const char *fmt, ...)
{
	char val[PVM_KV_VALUE_MAX + 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n > PVM_KV_VALUE_MAX)
		return -E2BIG;
	return kv_add_raw(kv, key, strlen(key), val, (size_t)n);
}

const char *pvm_kv_get(const struct pvm_kv *kv, const char *key)
{
	for (size_t i = 0; i < kv->n; i++)
		if (!strcmp(kv->key[i], key))
			return kv->val[i];
	return NULL;
}

int pvm_kv_get_u64(const struct pvm_kv *kv, const char *key, uint64_t *out)
{
	const char *v = pvm_kv_get(kv, key);
	char *end;
	unsigned long long x;

	if (!v)
		return -ENOENT;
	if (*v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = x;
	return 0;
}

int mig_kv_put(const struct pvm_kv *kv, struct pvm_buf *out)
{
	for (size_t i = 0; i < kv->n; i++) {
		pvm_buf_put_bytes(out, kv->key[i], strlen(kv->key[i]) + 1);
		pvm_buf_put_bytes(out, kv->val[i], strlen(kv->val[i]) + 1);
	}
	return out->err;
}

int mig_kv_parse(const void *buf, size_t len, struct pvm_kv *kv)
{
	const char *p = buf, *end = p + len;
	int rc;

	while (p < end) {
		const char *k = p, *kz, *v, *vz;

		kz = memchr(k, '\0', (size_t)(end - k));
		if (!kz)
			return -EBADMSG;
		v = kz + 1;
		vz = v < end ? memchr(v, '\0', (size_t)(end - v)) : NULL;
		if (!vz)
			return -EBADMSG;
		rc = kv_add_raw(kv, k, (size_t)(kz - k), v, (size_t)(vz - v));
		if (rc)
			return rc == -ENOMEM ? rc : -EBADMSG;
		p = vz + 1;
	}
	return 0;
}

int pvm_ctl_encode(enum pvm_ctl_kind kind, const struct pvm_kv *kv,
		   struct pvm_buf *out)
{
	size_t start = out->len;
	int rc;

	pvm_buf_put_u32(out, 0); /* length, patched below */
	pvm_buf_put_u8(out, (uint8_t)kind);
	rc = mig_kv_put(kv, out);
	if (rc)
		return rc;
	if (out->len - start - 4 > PVM_CTL_FRAME_MAX)
		return -E2BIG;
	pvm_put_le32(out->data + start, (uint32_t)(out->len - start - 4));
	return 0;
}

int pvm_ctl_decode(const void *buf, size_t len, enum pvm_ctl_kind *kind_out,
		   struct pvm_kv *kv)
{
	const char *p = buf;

	if (len < 1 || len > PVM_CTL_FRAME_MAX)
		return -EBADMSG;
	switch (p[0]) {
	case PVM_CTL_REQUEST:
	case PVM_CTL_PROGRESS:
	case PVM_CTL_ITEM:
	case PVM_CTL_RESULT:
	case PVM_CTL_CANCEL:
		*kind_out = (enum pvm_ctl_kind)p[0];
		break;
	default:
		return -EBADMSG;
	}
	return mig_kv_parse(p + 1, len - 1, kv);
}

int pvm_ctl_connect(const char *path, int *fd_out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, rc;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int pvm_ctl_send(int fd, enum pvm_ctl_kind kind, const struct pvm_kv *kv)
{
	struct pvm_buf b;
	int rc;

	pvm_buf_init(&b, PVM_CTL_FRAME_MAX + 4);
	rc = pvm_ctl_encode(kind, kv, &b);
	if (!rc)
		rc = write_all(fd, b.data, b.len);
	pvm_buf_dispose(&b);
	return rc;
}

/* Reads exactly @len bytes; a deadline of 0 waits forever. */
static int read_all(int fd, uint8_t *p, size_t len, uint64_t deadline)
{
	while (len) {
		ssize_t n;

		if (deadline) {
			struct pollfd pf = { .fd = fd, .events = POLLIN };
			uint64_t now = pvm_now_ms();
			int r;

			if (now >= deadline)
				return -ETIMEDOUT;
			r = poll(&pf, 1, (int)(deadline - now));
			if (r < 0 && errno != EINTR)
				return -errno;
			if (r <= 0)
				continue;
		}
		n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int pvm_ctl_recv(int fd, unsigned timeout_ms, enum pvm_ctl_kind *kind_out,
		 struct pvm_kv *kv)
{
	uint64_t deadline = timeout_ms ? pvm_now_ms() + timeout_ms : 0;
	uint8_t hdr[4], *body;
	uint32_t len;
	int rc;

	pvm_kv_dispose(kv);
	rc = read_all(fd, hdr, sizeof(hdr), deadline);
	if (rc)
		return rc;
	len = pvm_get_le32(hdr);
	if (len == 0 || len > PVM_CTL_FRAME_MAX)
		return -EBADMSG;
	body = malloc(len);
	if (!body)
		return -ENOMEM;
	rc = read_all(fd, body, len, deadline);
	if (!rc)
		rc = pvm_ctl_decode(body, len, kind_out, kv);
	free(body);
	if (rc)
		pvm_kv_dispose(kv);
	return rc;
}
