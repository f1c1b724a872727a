/* Floor for a C reactor: epoll + recv + send echo, woken N/s by a peer that dirties caches between. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/wait.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
int main(int argc,char**argv){
  double rate=atof(argv[1]); int dirty=argc>2;
  int sv[2]; socketpair(AF_UNIX,SOCK_STREAM,0,sv);
  if(fork()==0){ close(sv[0]); char buf[4096]; memset(buf,'x',400);
    static char junk[4<<20]; double end=now()+10, nxt=now();
    while(now()<end){ nxt+=1/rate; send(sv[1],buf,400,0); recv(sv[1],buf,4096,0);
      if(dirty) for(size_t i=0;i<sizeof junk;i+=64) junk[i]++;
      double d=nxt-now(); if(d>0) usleep(d*1e6);} close(sv[1]); _exit(0);}
  close(sv[1]); int ep=epoll_create1(0); struct epoll_event ev={.events=EPOLLIN,.data.fd=sv[0]};
  epoll_ctl(ep,EPOLL_CTL_ADD,sv[0],&ev); char buf[65536]; long n=0; struct rusage r0,r1; getrusage(RUSAGE_SELF,&r0);
  for(;;){ struct epoll_event e; if(epoll_wait(ep,&e,1,-1)<1) continue; ssize_t k=recv(sv[0],buf,sizeof buf,0); if(k<=0) break; send(sv[0],buf,k,0); n++; }
  getrusage(RUSAGE_SELF,&r1); wait(NULL);
  double u=(r1.ru_utime.tv_sec-r0.ru_utime.tv_sec)+(r1.ru_utime.tv_usec-r0.ru_utime.tv_usec)/1e6;
  double s=(r1.ru_stime.tv_sec-r0.ru_stime.tv_sec)+(r1.ru_stime.tv_usec-r0.ru_stime.tv_usec)/1e6;
  printf("%s: %.0f us CPU per wake (user %.0f) n=%ld\n", dirty?"dirty":"clean",(u+s)/n*1e6,u/n*1e6,n); return 0;}
