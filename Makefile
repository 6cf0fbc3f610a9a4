# Kiln: the two set-up commands are `make demo` and `make test`. Both install missing Debian packages when
# run as root, and otherwise say exactly what to install.

DEBIAN_PACKAGES := libopenblas-dev libgraphviz-dev zlib1g-dev dataset-fashion-mnist openmpi-bin libopenmpi-dev libcairo2-dev libhdf5-dev libonnx-testdata
SWIFT ?= swift
# Release builds target haswell (AVX2, FMA, F16C); see docs/ARCHITECTURE.md for why the flag lives here.
RELEASE_FLAGS := -c release -Xswiftc -target-cpu -Xswiftc haswell
KILN_RELEASE := .build/release/kiln

.PHONY: all deps build test docs demo release plans bench bench-distributed clean sanitize fuzz

all: build

deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "Installing missing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  else \
	    echo "Kiln needs these Debian packages:$$missing"; \
	    echo "Install them with:  sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build $(RELEASE_FLAGS)

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-xctest
	$(MAKE) docs

# The library's documentation (DocC: every library target, and the catalog Sources/Kiln/Kiln.docc), one
# combined archive in .build/plugins/Swift-DocC/outputs/Kiln.doccarchive. A DocC warning (a broken symbol
# link, a parameter documented under the wrong name) fails it.
DOC_TARGETS = Kiln KilnCore KilnKernels KilnGraph KilnCompiler KilnRuntime KilnTraining KilnConverters KilnInterop KilnGraphviz KilnPlot KilnMPI
docs: deps
	$(SWIFT) package generate-documentation --enable-experimental-combined-documentation \
	  $(foreach t,$(DOC_TARGETS),--target $(t)) --warnings-as-errors

# The test suite under AddressSanitizer, and its threaded parts (worker pool, parallel kernels, plans on two
# threads, the context's shared registry and generator, data prefetch) under ThreadSanitizer, each in its own
# build folder. SANITIZE_FILTER narrows the ThreadSanitizer run. Tests/lsan-suppressions.txt names the leaks
# of other libraries that LeakSanitizer reports; Kiln's own are never suppressed.
SANITIZE_FILTER ?= WorkerPool|ThreadedRun|Context|StridedPointwiseData|convolutionSpanningSeveralChunks|convolutionRunsLargeShapesWithThreads|DataIterator|BenchCLI
sanitize: deps
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	KILN_TEST_TIME_SCALE=6 LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/lsan-suppressions.txt \
	  $(SWIFT) test --skip-build --disable-xctest --sanitize=address --scratch-path .build-asan
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	$(SWIFT) test --skip-build --disable-xctest --sanitize=thread --scratch-path .build-tsan --filter "$(SANITIZE_FILTER)"

# libFuzzer over each loader (Fuzz/ is a nested package; `make test` never builds it; lld links it: gold
# fails on the sanitizer runtimes). Each target runs for
# FUZZ_SECONDS from the committed seeds in Fuzz/corpus/TARGET, growing its working corpus in
# .build-fuzz/TARGET; a crash is written there as crash-* and stops the run. FUZZ_TARGETS picks targets.
# malloc may return null, as outside AddressSanitizer: libhdf5 asks for absurd sizes on corrupted .h5 images
# and reports the refusal as an error. libFuzzer still flags a single allocation above its limit (2 GB).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= FuzzGraphFile FuzzJSON FuzzSafeTensors FuzzIDX FuzzGzip FuzzCSV FuzzCheckpoint FuzzMonitor FuzzONNX FuzzNNP FuzzNNablaParameters
fuzz: deps
	cd Fuzz && $(SWIFT) build -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -use-ld=lld
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p .build-fuzz/$$t; \
	  echo "== $$t for $(FUZZ_SECONDS) s"; \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/lsan-suppressions.txt ASAN_OPTIONS=allocator_may_return_null=1 \
	  Fuzz/.build/debug/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
	    -artifact_prefix=.build-fuzz/$$t/ -print_final_stats=1 .build-fuzz/$$t Fuzz/corpus/$$t \
	    > .build-fuzz/$$t.log 2>&1; status=$$?; \
	  grep -E "^#[0-9]+.*(INITED|DONE)|stat::number_of_executed_units|ERROR|SUMMARY" .build-fuzz/$$t.log | tail -5; \
	  [ $$status -eq 0 ] || { echo "$$t: a finding, see .build-fuzz/$$t.log and .build-fuzz/$$t/"; exit 1; }; \
	done

# The main job: LeNet on Fashion-MNIST for one epoch with the defaults, showing the plan's memory figures.
demo: release
	$(KILN_RELEASE) demo

plans: release
	./Plans/regenerate.sh $(KILN_RELEASE)

# Data-parallel training on 2 ranks of this machine: step time with and without overlap, the all-reduce
# bucketed and per parameter, over shared memory and over TCP (docs/DISTRIBUTED.md; raw figures kept in
# Benchmarks/distributed/).
MPIRUN := mpirun --allow-run-as-root --oversubscribe --mca btl_vader_single_copy_mechanism none
bench-distributed: release
	$(MPIRUN) -np 2 $(KILN_RELEASE) bench resnet20 --mode training --batch-size 32 --distributed --iterations 30 --bucket-size 256K
	$(MPIRUN) -np 2 $(KILN_RELEASE) bench lenet --mode training --batch-size 64 --distributed --iterations 30 --bucket-size 256K
	$(MPIRUN) -np 2 --mca btl tcp,self $(KILN_RELEASE) bench resnet20 --mode training --batch-size 32 --distributed --iterations 30 --bucket-size 256K

# Benchmarks/ is a nested package (ordo-one/benchmark): `make test` never builds it. KILN_BENCH_THREADS=2 for 2
# threads; BENCH_ARGS passes options to the plugin (e.g. BENCH_ARGS="--target Models").
bench: deps
	cd Benchmarks && $(SWIFT) package -Xswiftc -target-cpu -Xswiftc haswell benchmark $(BENCH_ARGS)

# Each convolution product of the zoo against one sgemm of the same M, N, K, alternating in one process
# (1 thread, pinned to core 0).
.PHONY: bench-conv
bench-conv: deps
	cd Benchmarks && $(SWIFT) build -c release -Xswiftc -target-cpu -Xswiftc haswell --product ConvEfficiency
	taskset -c 0 Benchmarks/.build/release/ConvEfficiency $(CONV_ARGS)

# Kiln vs nnabla vs JAX (venvs made outside git by Benchmarks/peers/setup.sh); PEERS_ARGS goes to run_peers.py.
.PHONY: bench-peers
bench-peers: release
	Benchmarks/peers/run.sh $(PEERS_ARGS)

# Kiln's int8 plans against its float32 plans (ResNet-20 and LeNet at b256, calibrated on random images),
# alternating in one run, with both arenas; QUANT_ARGS goes to the script (e.g. --threads 2, --params lenet=P).
.PHONY: bench-quantized
bench-quantized: release
	python3 Benchmarks/quantized/compare.py $(KILN_RELEASE) $(QUANT_ARGS)

# Models through other engines (docs/INTEROP.md): Kiln -> ONNX -> onnxruntime, PyTorch's ResNet-18 and
# MobileNetV2 -> ONNX -> Kiln against onnxruntime (with speed), Kiln -> .nnp/.h5 -> nnabla. The peers'
# virtualenvs (Benchmarks/peers/setup.sh), outside git; never run in CI.
PEERS_VENV ?= $(or $(KILN_PEERS_VENV),$(HOME)/.cache/kiln-peers)
.PHONY: bench-interop
bench-interop: release
	Benchmarks/peers/setup.sh
	$(PEERS_VENV)/ort/bin/python Benchmarks/interop/onnx_roundtrip.py $(KILN_RELEASE)
	$(PEERS_VENV)/ort/bin/python Benchmarks/interop/onnx_functions.py $(KILN_RELEASE)
	KILN_TORCH_PYTHON=$(PEERS_VENV)/torch/bin/python $(PEERS_VENV)/ort/bin/python Benchmarks/interop/pytorch_models.py $(KILN_RELEASE) 1
	$(PEERS_VENV)/nnabla/bin/python Benchmarks/interop/nnabla_roundtrip.py $(KILN_RELEASE)

# Kiln's int8 plans against onnxruntime's on ResNet-20 quantized by onnxruntime's own tool (QDQ), alternating in
# one run; QDQ_ARGS goes to the script (e.g. --threads 2). Uses the peers' onnxruntime virtualenv; never in CI.
.PHONY: bench-qdq
bench-qdq: release
	Benchmarks/peers/setup.sh
	$(PEERS_VENV)/ort/bin/python Benchmarks/quantized/onnxruntime_qdq.py $(KILN_RELEASE) $(QDQ_ARGS)

# The Swift code of the protobuf schemas in Protos/ (committed: building Kiln needs neither tool). Needs
# protoc (Debian: protobuf-compiler) and PROTOC_GEN_SWIFT, apple/swift-protobuf's plugin at the version
# Package.swift names (`swift build -c release --product protoc-gen-swift` in its checkout).
PROTOC_GEN_SWIFT ?= protoc-gen-swift
.PHONY: protos
protos:
	protoc --plugin=protoc-gen-swift=$(PROTOC_GEN_SWIFT) --proto_path=Protos --swift_out=Sources/KilnInterop/ONNX Protos/onnx.proto
	protoc --plugin=protoc-gen-swift=$(PROTOC_GEN_SWIFT) --proto_path=Protos --swift_out=Sources/KilnInterop/NNabla Protos/nnabla.proto

clean:
	rm -rf .build
