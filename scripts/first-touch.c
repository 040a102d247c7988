// Measures what first touch of memory costs on this machine, against touching it again: on
// a VM whose hypervisor backs guest memory lazily (and takes freed memory back), first touch
// is what a page-cache page new to the machine costs (BENCHMARKS.md, storage::CacheWork).
//
//   gcc -O2 -o /tmp/first-touch scripts/first-touch.c && taskset -c 1 /tmp/first-touch
//
// Three rounds of: map 1 GiB of anonymous memory, write one byte per 4 KiB page (first
// touch), memset all of it (memory touched before), unmap.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
int main(){size_t n=1UL<<30;
for(int r=0;r<3;r++){char*p=mmap(0,n,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
double t=now();for(size_t i=0;i<n;i+=4096)p[i]=1;double a=now()-t;
t=now();memset(p,2,n);double b=now()-t;
printf("first touch %.0f MB/s (%.2f us/page), memset again %.0f MB/s\n",n/a/1e6,a/(n/4096)*1e6,n/b/1e6);munmap(p,n);}
}
