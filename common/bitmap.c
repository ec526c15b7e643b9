/* Fixed-size bit sets, 64 bits a word, for dirty page maps. */
#include "common/common.h"

#include <stdlib.h>
#include <string.h>

static size_t nwords(size_t nbits)
{
	return (nbits + 63) / 64;
}

int pvm_bitmap_init(struct pvm_bitmap *bm, size_t nbits)
{
	bm->nbits = 0;
	bm->words = calloc(nwords(nbits) ? nwords(nbits) : 1, sizeof(uint64_t));
	if (!bm->words)
		return -ENOMEM;
	bm->nbits = nbits;
	return 0;
}

void pvm_bitmap_dispose(struct pvm_bitmap *bm)
{
	free(bm->words);
	bm->words = NULL;
	bm->nbits = 0;
}

void pvm_bitmap_set(struct pvm_bitmap *bm, size_t bit)
{
	if (bit < bm->nbits)
		bm->words[bit / 64] |= UINT64_C(1) << (bit % 64);
}

void pvm_bitmap_clear(struct pvm_bitmap *bm, size_t bit)
{
	if (bit < bm->nbits)
		bm->words[bit / 64] &= ~(UINT64_C(1) << (bit % 64));
}

bool pvm_bitmap_test(const struct pvm_bitmap *bm, size_t bit)
{
	return bit < bm->nbits &&
	       (bm->words[bit / 64] >> (bit % 64)) & 1;
}

void pvm_bitmap_clear_all(struct pvm_bitmap *bm)
{
	if (bm->words)
		memset(bm->words, 0, nwords(bm->nbits) * sizeof(uint64_t));
}

size_t pvm_bitmap_count(const struct pvm_bitmap *bm)
{
	size_t n = 0;

	for (size_t i = 0; i < nwords(bm->nbits); i++)
		n += (size_t)__builtin_popcountll(bm->words[i]);
	return n;
}

size_t pvm_bitmap_next_set(const struct pvm_bitmap *bm, size_t from)
{
	size_t w;
	uint64_t word;

	if (from >= bm->nbits)
		return bm->nbits;
	w = from / 64;
	word = bm->words[w] & (~UINT64_C(0) << (from % 64));
	for (;;) {
		if (word) {
			size_t bit = w * 64 + (size_t)__builtin_ctzll(word);
			return bit < bm->nbits ? bit : bm->nbits;
		}
		if (++w >= nwords(bm->nbits))
			return bm->nbits;
		word = bm->words[w];
	}
}
