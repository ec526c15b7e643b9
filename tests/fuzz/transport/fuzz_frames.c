/*
 * libFuzzer target: a byte stream as a receive thread sees it — frame
 * headers, bounded by type, then PAGES bodies through the batch decoder.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *scratch;
	uint64_t pfns[PVM_TP_BATCH_PAGES];
	const uint8_t *pages[PVM_TP_BATCH_PAGES];
	size_t off = 0;

	if (!scratch)
		scratch = malloc(TP_BATCH_BYTES);
	while (size - off >= TP_HDR_LEN) {
		uint16_t type;
		uint32_t len;
		const char *why;
		size_t n;

		if (tp_parse_header(data + off, &type, &len, &why))
			return 0;
		off += TP_HDR_LEN;
		if (len > size - off)
			return 0; /* a truncated frame: the reader waits/fails */
		if (type == TP_PAGES &&
		    tp_decode_pages(data + off, len, scratch, pfns, pages, &n,
				    &why) == 0) {
			/* Touch every page the decoder hands out. */
			volatile uint8_t sink = 0;

			for (size_t i = 0; i < n; i++)
				if (pages[i])
					sink ^= pages[i][0] ^
						pages[i][PVM_PAGE_SIZE - 1];
			(void)sink;
		}
		off += len;
	}
	return 0;
}
