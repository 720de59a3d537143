# Clients in Go, Java, Node and Python, generated from proto/ (included by the
# top-level Makefile; run from the repository root).
#
#   make proto-clients        regenerate Go (committed), Node and Java code from proto/
#   make proto-clients-check  regenerate Go and fail if clients/go changed (CI)
#   make clients-build        build every example (installs the pinned tools first;
#                             Maven runs the Java subscriber's tests as part of the build)
#   make clients-test         build, test the Go and Node subscribers, then run every example
#                             against a live sidecar (pytest -m clients tests/clients)
#
# Tools are pinned here and installed from the registries, idempotently; the Go
# module cache, ~/.m2 and the npm cache make a second run fast.

PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

CLIENTS_GO := clients/go
CLIENTS_JAVA := clients/java
CLIENTS_NODE := clients/node
GO_TOOLS := $(CLIENTS_GO)/.bin
GO_TOOLS_STAMP := $(GO_TOOLS)/.tools-$(PROTOC_GEN_GO_VERSION)-$(PROTOC_GEN_GO_GRPC_VERSION)
GO_EXAMPLE := $(GO_TOOLS)/wahook-subscribe
GO_SOURCES = $(shell find $(CLIENTS_GO) -name '*.go' -not -path '*/.bin/*') $(CLIENTS_GO)/go.mod $(CLIENTS_GO)/go.sum
JAVA_JAR := $(CLIENTS_JAVA)/target/wahook-subscribe.jar
JAVA_SOURCES = $(shell find $(CLIENTS_JAVA)/src -name '*.java') $(CLIENTS_JAVA)/pom.xml
NODE_STAMP := $(CLIENTS_NODE)/node_modules/.installed
NODE_GEN_STAMP := $(CLIENTS_NODE)/gen/.generated
NODE_EXAMPLE := $(CLIENTS_NODE)/dist/src/subscribe.js
NODE_SOURCES = $(wildcard $(CLIENTS_NODE)/src/*.ts) $(CLIENTS_NODE)/tsconfig.json
MVN := mvn -B -q

.PHONY: proto-clients proto-clients-go proto-clients-node proto-clients-java proto-clients-check \
	clients-build clients-test

# --- Go: generated code is committed (a Go module must build from a plain `go get`).
$(GO_TOOLS_STAMP):
	mkdir -p $(GO_TOOLS)
	GOBIN="$(abspath $(GO_TOOLS))" go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN="$(abspath $(GO_TOOLS))" go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	rm -f $(GO_TOOLS)/.tools-*
	touch $@

# The protoc version line is dropped from the headers so that the committed code
# does not change with the grpcio-tools release in the venv; the plugin versions,
# which decide the code, stay.
proto-clients-go: $(GO_TOOLS_STAMP) | $(VENV_STAMP)
	rm -rf $(CLIENTS_GO)/wahookv1
	$(PY) -m grpc_tools.protoc -I proto \
	  --plugin=protoc-gen-go=$(GO_TOOLS)/protoc-gen-go \
	  --plugin=protoc-gen-go-grpc=$(GO_TOOLS)/protoc-gen-go-grpc \
	  --go_out=$(CLIENTS_GO) --go_opt=module=github.com/wahook/wahook/clients/go \
	  --go-grpc_out=$(CLIENTS_GO) --go-grpc_opt=module=github.com/wahook/wahook/clients/go \
	  $(PROTOS)
	sed -i -E '/^\/\/ (\t|- )protoc +v[0-9]/d' $(CLIENTS_GO)/wahookv1/*.go

$(GO_EXAMPLE): $(GO_SOURCES)
	cd $(CLIENTS_GO) && go vet ./... && go build -buildvcs=false -o .bin/wahook-subscribe ./cmd/wahook-subscribe

# --- Node: TypeScript generated at build time into clients/node/gen (ignored by git).
$(NODE_STAMP): $(CLIENTS_NODE)/package.json $(CLIENTS_NODE)/package-lock.json
	cd $(CLIENTS_NODE) && npm ci --prefer-offline --no-audit --no-fund --loglevel=error
	touch $@

# The venv is order-only: it only has to exist (for grpc_tools). A newer pyproject.toml
# must not reinstall it, and regenerate wahook.v1, under a running pytest.
$(NODE_GEN_STAMP): $(PROTOS) $(NODE_STAMP) $(CLIENTS_NODE)/generate.sh | $(VENV_STAMP)
	PYTHON="$(abspath $(PY))" sh $(CLIENTS_NODE)/generate.sh
	touch $@

proto-clients-node: $(NODE_STAMP) | $(VENV_STAMP)
	rm -f $(NODE_GEN_STAMP)
	$(MAKE) --no-print-directory $(NODE_GEN_STAMP)

$(NODE_EXAMPLE): $(NODE_GEN_STAMP) $(NODE_SOURCES)
	cd $(CLIENTS_NODE) && ./node_modules/.bin/tsc -p .

# --- Java: generated at build time by Maven into clients/java/target.
proto-clients-java:
	cd $(CLIENTS_JAVA) && $(MVN) generate-sources

$(JAVA_JAR): $(PROTOS) $(JAVA_SOURCES)
	cd $(CLIENTS_JAVA) && $(MVN) package

proto-clients: proto-clients-go proto-clients-node proto-clients-java

# CI: the committed Go code must be what the pinned tools make of proto/.
proto-clients-check: proto-clients-go
	git diff --exit-code -- $(CLIENTS_GO)
	test -z "$$(git status --porcelain -- $(CLIENTS_GO)/wahookv1)"

# Python needs no build: its example imports wahook.client from the venv.
clients-build: clients-build-go clients-build-java clients-build-node clients-build-python

# The Go and Node subscribers' own tests (scripted gRPC servers), then every example live.
clients-test: clients-build
	cd $(CLIENTS_GO) && go test -count=1 ./...
	cd $(CLIENTS_NODE) && node --test dist/src/subscriber.test.js
	$(BIN)/pytest -m clients tests/clients

# One language at a time (tests/clients builds each example it runs through these).
.PHONY: clients-build-go clients-build-java clients-build-node clients-build-python
clients-build-go: $(GO_EXAMPLE)
clients-build-java: $(JAVA_JAR)
clients-build-node: $(NODE_EXAMPLE)
clients-build-python: $(PY_GEN_STAMP)
