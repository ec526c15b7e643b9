#include <stdio.h>
int main(void) { puts("pvmigd: not yet"); return 0; }
