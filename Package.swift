// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Kiln",
    products: [
        .library(name: "Kiln", targets: ["Kiln"]),
        .library(name: "KilnGraphviz", targets: ["KilnGraphviz"]),
        .library(name: "KilnMPI", targets: ["KilnMPI"]),
        .library(name: "KilnPlot", targets: ["KilnPlot"]),
        .executable(name: "kiln", targets: ["KilnCLI"]),
    ],
    // MPI (on by default): distributed training over Open MPI. `swift build --disable-default-traits` builds
    // everything else without libopenmpi-dev; `MPICommunicator.shared()` then says so.
    traits: [
        .trait(name: "MPI", description: "Distributed training over Open MPI (Debian: libopenmpi-dev)"),
        .default(enabledTraits: ["MPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Zip archives: NumPy's .npz datasets (and nnabla's .nnp models).
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
        // `swift package generate-documentation`: the DocC catalog in Sources/Kiln/Kiln.docc.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
        // ONNX models are protobuf messages; the Swift code for the part of ONNX's schema Kiln reads is
        // generated once (`make protos`) and committed.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // Graphviz's layout and graph libraries (Debian: libgraphviz-dev).
        .systemLibrary(name: "CGraphviz", path: "Sources/CGraphviz", pkgConfig: "libgvc",
                       providers: [.apt(["libgraphviz-dev"])]),
        // zlib, for the gzip-compressed IDX files of Debian's dataset-fashion-mnist (Debian: zlib1g-dev).
        // cairo (Debian: libcairo2-dev), for training curves.
        .systemLibrary(name: "CCairo", path: "Sources/CCairo", pkgConfig: "cairo", providers: [.apt(["libcairo2-dev"])]),
        // Open MPI (Debian: libopenmpi-dev), only with the MPI trait.
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        // HDF5 (Debian: libhdf5-dev), for nnabla's .h5 parameter files.
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CKilnZlib", path: "Sources/CKilnZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // The library, in layers: each target depends only on the layers below it (naming every one its files
        // import), so a reference upward (a graph type naming an executable, a kernel naming a variable) does
        // not compile. Declarations one layer lends another are `package`, not `public`: they are not part of
        // the API users see.
        // The value types every layer shares: errors, element types, shapes.
        .target(name: "KilnCore"),
        // Kernels over raw buffers: elementwise, GEMM, convolution, pooling, reductions, the worker pool.
        // Kernels that need instructions chosen at run time (AVX2+FMA), in C with per-function `target`
        // attributes: no compiler flags, any x86-64.
        .target(name: "CKilnKernels"),
        // OpenBLAS is loaded at run time (`OpenBLAS`), after Kiln has chosen its kernels from the CPU.
        .target(name: "KilnKernels", dependencies: ["KilnCore", "CKilnKernels"]),
        // The define-by-run graph: variables, functions, parameters, modules and their file formats.
        .target(name: "KilnGraph", dependencies: ["KilnCore", "KilnKernels"]),
        // Lowering a graph into a plan: schedule, fusion, autodiff, recompute, liveness, memory planning.
        .target(name: "KilnCompiler", dependencies: ["KilnCore", "KilnKernels", "KilnGraph"]),
        // Running a plan: executables, arenas, Variable.forward/backward and their plan cache.
        .target(name: "KilnRuntime", dependencies: ["KilnCore", "KilnKernels", "KilnGraph", "KilnCompiler"]),
        // Solvers, trainers, monitors and datasets.
        .target(name: "KilnTraining", dependencies: [
            "KilnCore", "KilnKernels", "KilnGraph", "KilnCompiler", "KilnRuntime", "CKilnZlib",
            .product(name: "ZIPFoundation", package: "ZIPFoundation"),
        ]),
        // Graph converters (BatchNormalization folding, fixed point): graph rewrites, which need nothing above
        // the graph.
        .target(name: "KilnConverters", dependencies: ["KilnCore", "KilnGraph", "KilnCompiler", "KilnRuntime"]),
        // Other engines' model files read into graphs and graphs written back out: ONNX, nnabla's .nnp and .h5.
        .target(name: "KilnInterop", dependencies: [
            "KilnCore", "KilnGraph", "CHDF5", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "ZIPFoundation", package: "ZIPFoundation"),
        ]),
        // Everything, re-exported (Exports.swift), plus the model zoo and graph-file tools.
        .target(name: "Kiln", dependencies: [
            "KilnCore", "KilnKernels", "KilnGraph", "KilnCompiler", "KilnRuntime", "KilnTraining", "KilnConverters",
            "KilnInterop",
        ]),
        .target(name: "KilnGraphviz", dependencies: ["Kiln", "CGraphviz"]),
        // Training curves from monitor files, drawn with cairo.
        .target(name: "KilnPlot", dependencies: ["Kiln", "CCairo"]),
        // Data-parallel training across processes: `MPICommunicator` (the transport is Open MPI's).
        .target(name: "KilnMPI", dependencies: [
            "KilnCore", "KilnGraph", "KilnTraining", .target(name: "CMPI", condition: .when(traits: ["MPI"])),
        ], swiftSettings: [.define("MPI", .when(traits: ["MPI"]))]),
        .executableTarget(name: "KilnCLI", dependencies: [
            "Kiln", "KilnGraphviz", "KilnMPI", "KilnPlot",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "KilnTests", dependencies: [
            // The layers too, for `@testable import` of their internals.
            "Kiln", "KilnCore", "KilnKernels", "KilnGraph", "KilnCompiler", "KilnRuntime", "KilnTraining", "KilnConverters", "KilnInterop",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            // Training curves, and cairo itself to read the pictures back.
            "KilnPlot", "CCairo",
        ], resources: [.copy("Fixtures")]),
        .testTarget(name: "KilnGraphvizTests", dependencies: ["Kiln", "KilnGraphviz"]),
    ],
    swiftLanguageModes: [.v6]
)
