/*
 * A byte stream (libxenguest's, on Xen) carried over a migration channel
 * in chunks of up to PVM_XCHUNK_PAGES page slots, so that the transport's
 * lz4, zero-page elision and parallel data streams apply to it
 * (docs/migration-protocol.md, "On Xen"). The sender queues chunk k as a
 * page batch at slots pvm_xchunk_base(k).., then a message giving its
 * length; the receiver's on_pages callback puts the pages into a staging
 * area, and on the message takes the chunk out of it.
 *
 * Why two halves: the transport delivers every page sent before a message
 * before that message, and none sent after it before it, but once the
 * receiver has the message for chunk k the pages of chunk k + 1 may arrive
 * while chunk k is still being consumed (written into a pipe that libxl
 * reads at its own pace). They land in the other half; chunk k + 2 cannot
 * arrive before the receiver asks for the message of chunk k + 1.
 */
#include "migrate/internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "transport/transport.h"

uint64_t pvm_xchunk_base(uint64_t k)
{
	return (k % 2) * PVM_XCHUNK_PAGES;
}

int pvm_xchunk_send_pages(struct pvm_channel *ch, uint64_t k,
			  const uint8_t *buf, size_t len)
{
	uint64_t pfns[PVM_XCHUNK_PAGES];
	const uint8_t *pages[PVM_XCHUNK_PAGES];
	uint8_t *tail = NULL;
	size_t n = (len + PVM_PAGE_SIZE - 1) / PVM_PAGE_SIZE;
	int rc;

	if (len > PVM_XCHUNK_BYTES)
		return -E2BIG;
	if (!n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		pfns[i] = pvm_xchunk_base(k) + i;
		pages[i] = buf + i * PVM_PAGE_SIZE;
	}
	if (len % PVM_PAGE_SIZE) {
		/* The last page is partial: send it zero-padded. */
		tail = calloc(1, PVM_PAGE_SIZE);
		if (!tail)
			return -ENOMEM;
		memcpy(tail, buf + (n - 1) * PVM_PAGE_SIZE, len % PVM_PAGE_SIZE);
		pages[n - 1] = tail;
	}
	rc = pvm_channel_send_pages(ch, pfns, pages, n);
	free(tail); /* the transport copied it */
	return rc;
}

int pvm_xchunk_rx_init(struct pvm_xchunk_rx *rx)
{
	memset(rx, 0, sizeof(*rx));
	rx->stage = calloc(2, PVM_XCHUNK_BYTES);
	return rx->stage ? 0 : -ENOMEM;
}

void pvm_xchunk_rx_dispose(struct pvm_xchunk_rx *rx)
{
	free(rx->stage);
	rx->stage = NULL;
}

int pvm_xchunk_rx_pages(struct pvm_xchunk_rx *rx, const uint64_t *pfns,
			const uint8_t *const *pages, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (pfns[i] >= 2 * PVM_XCHUNK_PAGES)
			return -ERANGE;
		if (pages[i])
			memcpy(rx->stage + pfns[i] * PVM_PAGE_SIZE, pages[i],
			       PVM_PAGE_SIZE);
		else
			memset(rx->stage + pfns[i] * PVM_PAGE_SIZE, 0,
			       PVM_PAGE_SIZE);
		atomic_fetch_add(&rx->half_pages[pfns[i] / PVM_XCHUNK_PAGES], 1);
	}
	return 0;
}

int pvm_xchunk_rx_take(struct pvm_xchunk_rx *rx, uint64_t bytes,
		       const uint8_t **at, size_t *len_out)
{
	uint64_t k = rx->taken;
	uint64_t in = atomic_exchange(&rx->half_pages[k % 2], 0);

	if (bytes > PVM_XCHUNK_BYTES ||
	    in != (bytes + PVM_PAGE_SIZE - 1) / PVM_PAGE_SIZE)
		return -EBADMSG;
	rx->taken++;
	*at = rx->stage + pvm_xchunk_base(k) * PVM_PAGE_SIZE;
	*len_out = (size_t)bytes;
	return 0;
}
