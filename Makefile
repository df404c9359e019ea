# execgate: a gate between AI agents and the shell.
#   make demo   build, then replay the incident against the example profiles
#   make test   everything, as root (namespaces, cgroups and seccomp are real)
GO       ?= go
PREFIX   ?= /usr/local
DESTDIR  ?=
BIN      := bin
FUZZTIME ?= 30s
CMDS     := $(notdir $(wildcard cmd/*))

export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all build deps test test-accounts test-vm deb vet funclen bench demo install fuzz clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -buildmode=pie -o $(BIN)/ ./cmd/...

# deps installs the system packages the build, the tests and the demo
# need (libseccomp for cgo, journald, the programs the tests run) when they
# are missing; see scripts/deps.sh.
deps:
	@scripts/deps.sh

# vet: go vet, gofmt, and the longest functions on the request and run
# paths (internal/tools/funclen fails above FUNCLEN_MAX lines).
FUNCLEN_MAX  ?= 80
# errcheck (scripts/errcheck.sh) over the packages that hold the rule
# "a record before an action must succeed; a note may fail".
ERRCHECK_PKGS := ./supervisor ./api ./client ./cmd/execgate ./cmd/egsh ./audit ./systemd/... ./supervisor/changes
FUNCLEN_PKGS := ./supervisor ./supervisor/sandbox ./supervisor/execwatch ./policy ./shellparse ./cmd/execgated ./cmd/egsh ./cmd/execgate ./audit ./systemd/journal ./supervisor/changes ./supervisor/egress ./supervisor/sandbox/netcapture
vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change: $$out" >&2; exit 1; fi
	@GO=$(GO) scripts/errcheck.sh $(ERRCHECK_PKGS)
	@$(GO) run ./internal/tools/funclen -max $(FUNCLEN_MAX) -top 5 $(FUNCLEN_PKGS)

funclen:
	@$(GO) run ./internal/tools/funclen -max $(FUNCLEN_MAX) -top 5 $(FUNCLEN_PKGS)

test: deps
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "make test must run as root: the sandbox, cgroup and seccomp tests use the real kernel and do not skip." >&2; exit 1; fi
	$(MAKE) vet
	$(GO) test -count=1 -timeout 20m ./...
	$(MAKE) test-accounts
	$(MAKE) test-vm
	$(MAKE) demo

# deb builds bin/deb/execgate_VERSION_ARCH.deb with nfpm (packaging/nfpm.yaml,
# maintainer scripts in packaging/); see scripts/deb.sh.
deb: deps build
	@GO="$(GO)" scripts/deb.sh

# test-vm boots a Debian bookworm VM under qemu (software emulation) with a
# real systemd on cgroup v2, installs the .deb into it and runs the service
# scenario in scripts/vm/; the image is cached (VM_CACHE). See scripts/vm/README.
VM_CACHE ?= /var/cache/execgate-vm
test-vm: deb
	@VM_CACHE="$(VM_CACHE)" scripts/vm/test.sh

# test-accounts runs the decision packages' tests with and without accounts
# flow, builder and reviewer, in private mount namespaces (the host's
# /etc/passwd is not touched): they must not depend on the host's accounts.
test-accounts:
	@GO="$(GO)" scripts/accounts-test.sh

# bench prints ratios measured in one run against baselines run the same
# way from the same process: policy decisions, a sandboxed `sh -c true`
# against sh, unshare and bwrap, and the runtime exec check on and off.
bench: deps build
	@echo "== policy decisions over policy/testdata/corpus.txt (examples/flow.toml)"
	@$(GO) test -count=1 -run '^$$' -bench Decide -benchtime 20000x ./policy/ | grep -E '^Benchmark'
	@echo "== sandbox start-up (medians of interleaved rounds)"
	@EXECGATE_BENCH=1 $(GO) test -count=1 -run '^TestBenchRatios$$' -v ./supervisor/sandbox/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS$$' -e '^ok '
	@echo "== end to end through execgated (medians of interleaved rounds)"
	@EXECGATE_BENCH=1 $(GO) test -count=1 -run '^TestBenchEndToEnd$$' -v ./integration/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS$$' -e '^ok ' -e '^ *id '
	@echo "== change sets: a 10,000-file, 200 MB write job through execgated in review mode (apply included) vs direct mode, and a run's start-up in review mode vs direct (medians of interleaved rounds)"
	@EXECGATE_BENCH=1 $(GO) test -count=1 -run '^TestBenchChangesEndToEnd$$' -v ./integration/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS$$' -e '^ok '
	@echo "== exec check and confirmation, per exec (medians of interleaved rounds)"
	@EXECGATE_BENCH=1 $(GO) test -count=1 -run '^TestBenchConfirm$$' -v ./supervisor/execwatch/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS$$' -e '^ok '
	@echo "== the JSONL audit file: a chained, fsync'd record against a direct append + fsync (medians of interleaved rounds)"
	@EXECGATE_BENCH=1 $(GO) test -count=1 -run '^TestBenchChainedWrite$$' -v ./audit/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS$$' -e '^ok '
	@echo "== runtime exec check (medians of interleaved rounds)"
	@EXECGATE_BENCH=1 $(GO) test -count=1 -run '^TestBenchExecCheck$$' -v ./supervisor/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS$$' -e '^ok ' 
	@echo "== network egress: a confined run netns through the execgate proxy to 127.0.0.1 on the host vs direct: set-up and 1 GiB each way (medians of interleaved rounds; needs root)"
	@EXECGATE_BENCH=1 $(GO) test -count=1 -run '^TestBenchEgress$$' -v ./supervisor/egress/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS$$' -e '^ok '

demo: deps build
	@scripts/demo.sh

fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# install puts everything where systemd looks for it. DESTDIR stages a
# package; without DESTDIR it also creates the execgate-admin group and
# the directories (systemd-sysusers and systemd-tmpfiles work without
# systemd running) and reloads systemd when it runs. Then:
#   sudo systemctl enable --now execgated.socket execgated-admin.socket
ifeq ($(PREFIX),/usr)
UNITDIR  ?= /lib/systemd/system
else
UNITDIR  ?= $(PREFIX)/lib/systemd/system
endif
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/execgate/examples \
	  $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR)
	install -d -m 0755 $(DESTDIR)/etc/execgate $(DESTDIR)/etc/execgate/agents
	install -m 0755 $(addprefix $(BIN)/,$(CMDS)) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 examples/*.toml $(DESTDIR)$(PREFIX)/share/execgate/examples/
	@[ -e $(DESTDIR)/etc/execgate/execgate.toml ] || install -m 0644 examples/execgate.toml $(DESTDIR)/etc/execgate/execgate.toml
	sed 's|/usr/local/bin/|$(PREFIX)/bin/|g' systemd/execgated.service > $(DESTDIR)$(UNITDIR)/execgated.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/execgated.service
	install -m 0644 systemd/execgated.socket systemd/execgated-admin.socket $(DESTDIR)$(UNITDIR)/
	install -m 0644 systemd/execgate.sysusers.conf $(DESTDIR)$(SYSUSERSDIR)/execgate.conf
	install -m 0644 systemd/execgate.tmpfiles.conf $(DESTDIR)$(TMPFILESDIR)/execgate.conf
	@if [ -z "$(DESTDIR)" ]; then \
	  systemd-sysusers $(SYSUSERSDIR)/execgate.conf && \
	  systemd-tmpfiles --create $(TMPFILESDIR)/execgate.conf && \
	  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	fi

clean:
	rm -rf $(BIN)
