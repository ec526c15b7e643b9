#include <stdio.h>
int main(void) { puts("pvmig: not yet"); return 0; }
