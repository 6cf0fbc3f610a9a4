// swift-tools-version:6.0
import PackageDescription

// The layers are separate modules, and their hot paths are generic: a kernel called from the layer above
// (`Elementwise.map` from a function, `Threads.elements` from a solver) runs fast only when specialized for the
// caller's operation, so that the per-element call inlines and the loop vectorises, as it did when Kiln was one
// module. Cross-module optimization serializes the public generic kernels' bodies (and what they use) for that.
// It does not reach `package` generics (`Threads.chunks/items/elements`, `Broadcast.binary/gradient`): those are
// called unspecialized from the layers above, once per call, with the per-element work behind a witness call.
let layer: [SwiftSetting] = [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]

let package = Package(
    name: "Kiln",
    products: [
        .library(name: "Kiln", targets: ["Kiln"]),
        .library(name: "KilnGraphviz", targets: ["KilnGraphviz"]),
        .executable(name: "kiln", targets: ["KilnCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // OpenBLAS through its CBLAS header (Debian: libopenblas-dev).
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // Graphviz's layout and graph libraries (Debian: libgraphviz-dev).
        .systemLibrary(name: "CGraphviz", path: "Sources/CGraphviz", pkgConfig: "libgvc",
                       providers: [.apt(["libgraphviz-dev"])]),
        // zlib, for the gzip-compressed IDX files of Debian's dataset-fashion-mnist (Debian: zlib1g-dev).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // The library, in layers: each target depends only on the layers below it (naming every one its files
        // import), so a reference upward (a graph type naming an executable, a kernel naming a variable) does
        // not compile. Declarations one layer lends another are `package`, not `public`: they are not part of
        // the API users see.
        // The value types every layer shares: errors, element types, shapes.
        .target(name: "KilnCore", swiftSettings: layer),
        // Kernels over raw buffers: elementwise, GEMM, convolution, pooling, reductions, the worker pool.
        .target(name: "KilnKernels", dependencies: ["KilnCore", "CBLAS"], swiftSettings: layer),
        // The define-by-run graph: variables, functions, parameters, modules and their file formats.
        .target(name: "KilnGraph", dependencies: ["KilnCore", "KilnKernels"], swiftSettings: layer),
        // Lowering a graph into a plan: schedule, fusion, autodiff, recompute, liveness, memory planning.
        .target(name: "KilnCompiler", dependencies: ["KilnCore", "KilnKernels", "KilnGraph"], swiftSettings: layer),
        // Running a plan: executables, arenas, Variable.forward/backward and their plan cache.
        .target(name: "KilnRuntime", dependencies: ["KilnCore", "KilnKernels", "KilnGraph", "KilnCompiler"], swiftSettings: layer),
        // Solvers, trainers, monitors and datasets.
        .target(name: "KilnTraining", dependencies: [
            "KilnCore", "KilnKernels", "KilnGraph", "KilnCompiler", "KilnRuntime", "CZlib",
        ], swiftSettings: layer),
        // Graph converters (BatchNormalization folding, fixed point): graph rewrites, which need nothing above
        // the graph.
        .target(name: "KilnConverters", dependencies: ["KilnCore", "KilnGraph"], swiftSettings: layer),
        // Everything, re-exported (Exports.swift), plus the model zoo and graph-file tools.
        .target(name: "Kiln", dependencies: [
            "KilnCore", "KilnKernels", "KilnGraph", "KilnCompiler", "KilnRuntime", "KilnTraining", "KilnConverters",
        ], swiftSettings: layer),
        .target(name: "KilnGraphviz", dependencies: ["Kiln", "CGraphviz"]),
        .executableTarget(name: "KilnCLI", dependencies: [
            "Kiln", "KilnGraphviz",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "KilnTests", dependencies: [
            // The layers too, for `@testable import` of their internals.
            "Kiln", "KilnCore", "KilnKernels", "KilnGraph", "KilnCompiler", "KilnRuntime", "KilnTraining", "KilnConverters",
        ], resources: [.copy("Fixtures")]),
        .testTarget(name: "KilnGraphvizTests", dependencies: ["Kiln", "KilnGraphviz"]),
    ],
    swiftLanguageModes: [.v6]
)
