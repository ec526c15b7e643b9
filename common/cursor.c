/* The bounds-checked little-endian cursor and the capped output buffer. */
#include "common/common.h"

#include <stdlib.h>
#include <string.h>

void pvm_cursor_init(struct pvm_cursor *c, const void *buf, size_t len)
{
	c->buf = buf;
	c->len = buf ? len : 0;
	c->off = 0;
	c->err = 0;
}

static const uint8_t *take(struct pvm_cursor *c, size_t n)
{
	const uint8_t *p;

	if (c->err)
		return NULL;
	if (n > c->len - c->off) {
		c->err = -EBADMSG;
		return NULL;
	}
	p = c->buf + c->off;
	c->off += n;
	return p;
}

int pvm_cursor_u8(struct pvm_cursor *c, uint8_t *out)
{
	const uint8_t *p = take(c, 1);

	if (!p)
		return c->err;
	*out = p[0];
	return 0;
}

int pvm_cursor_u16(struct pvm_cursor *c, uint16_t *out)
{
	const uint8_t *p = take(c, 2);

	if (!p)
		return c->err;
	*out = pvm_get_le16(p);
	return 0;
}

int pvm_cursor_u32(struct pvm_cursor *c, uint32_t *out)
{
	const uint8_t *p = take(c, 4);

	if (!p)
		return c->err;
	*out = pvm_get_le32(p);
	return 0;
}

int pvm_cursor_u64(struct pvm_cursor *c, uint64_t *out)
{
	const uint8_t *p = take(c, 8);

	if (!p)
		return c->err;
	*out = pvm_get_le64(p);
	return 0;
}

int pvm_cursor_bytes(struct pvm_cursor *c, size_t n, const uint8_t **out)
{
	const uint8_t *p = take(c, n);

	if (!p)
		return c->err;
	*out = p;
	return 0;
}

int pvm_cursor_copy(struct pvm_cursor *c, void *dst, size_t n)
{
	const uint8_t *p = take(c, n);

	if (!p)
		return c->err;
	if (n)
		memcpy(dst, p, n);
	return 0;
}

int pvm_cursor_skip(struct pvm_cursor *c, size_t n)
{
	return take(c, n) ? 0 : c->err;
}

size_t pvm_cursor_remaining(const struct pvm_cursor *c)
{
	return c->err ? 0 : c->len - c->off;
}

void pvm_buf_init(struct pvm_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
	b->err = 0;
}

void pvm_buf_dispose(struct pvm_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void pvm_buf_reset(struct pvm_buf *b)
{
	b->len = 0;
	b->err = 0;
}

/* Returns where @n more bytes go, or NULL with b->err set. */
static uint8_t *reserve(struct pvm_buf *b, size_t n)
{
	size_t want, cap;
	uint8_t *p;

	if (b->err)
		return NULL;
	if (n > b->max || b->len > b->max - n) {
		b->err = -E2BIG;
		return NULL;
	}
	want = b->len + n;
	if (want > b->cap) {
		cap = b->cap ? b->cap : 256;
		while (cap < want)
			cap *= 2;
		if (cap > b->max)
			cap = b->max;
		p = realloc(b->data, cap);
		if (!p) {
			b->err = -ENOMEM;
			return NULL;
		}
		b->data = p;
		b->cap = cap;
	}
	p = b->data + b->len;
	b->len += n;
	return p;
}

void pvm_buf_put_u8(struct pvm_buf *b, uint8_t v)
{
	uint8_t *p = reserve(b, 1);

	if (p)
		p[0] = v;
}

void pvm_buf_put_u16(struct pvm_buf *b, uint16_t v)
{
	uint8_t *p = reserve(b, 2);

	if (p)
		pvm_put_le16(p, v);
}

void pvm_buf_put_u32(struct pvm_buf *b, uint32_t v)
{
	uint8_t *p = reserve(b, 4);

	if (p)
		pvm_put_le32(p, v);
}

void pvm_buf_put_u64(struct pvm_buf *b, uint64_t v)
{
	uint8_t *p = reserve(b, 8);

	if (p)
		pvm_put_le64(p, v);
}

void pvm_buf_put_bytes(struct pvm_buf *b, const void *src, size_t n)
{
	uint8_t *p = reserve(b, n);

	if (p && n)
		memcpy(p, src, n);
}

void pvm_buf_put_zeros(struct pvm_buf *b, size_t n)
{
	uint8_t *p = reserve(b, n);

	if (p && n)
		memset(p, 0, n);
}

void pvm_buf_pad(struct pvm_buf *b, size_t align)
{
	size_t rem = b->len & (align - 1);

	if (rem)
		pvm_buf_put_zeros(b, align - rem);
}
