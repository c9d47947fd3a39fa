# One eBPF object per *.c of the including directory (out/NAME.o), with the
# flags every edgelb object is built with. The includer may set, before the
# include: EXTRA_CFLAGS (include paths, warnings) and DEPS (headers that
# rebuild everything when they change).
CLANG ?= clang
CFLAGS := -O2 -g -target bpf -mcpu=v3 -Wall -Wno-unused-function \
	-I/usr/include/x86_64-linux-gnu $(EXTRA_CFLAGS)
SRCS := $(wildcard *.c)
OBJS := $(patsubst %.c,out/%.o,$(SRCS))

all: $(OBJS)

out/%.o: %.c $(DEPS) | out
	$(CLANG) $(CFLAGS) -c $< -o $@

out:
	mkdir -p out

clean:
	rm -rf out

.PHONY: all clean
