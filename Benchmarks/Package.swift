// swift-tools-version:6.1
// Kiln's benchmarks: a nested package so that the main package's `swift build` / `make test` never builds
// them. Run them with `make bench` (or `cd Benchmarks && swift package benchmark`).
import PackageDescription

let benchmarkTarget: (String) -> Target = { name in
    .executableTarget(
        name: name,
        dependencies: [
            .product(name: "Benchmark", package: "benchmark"),
            .product(name: "Kiln", package: "Kiln"),
            "BenchSupport",
        ],
        path: "Benchmarks/\(name)",
        swiftSettings: [.swiftLanguageMode(.v5)],
        plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")])
}

let package = Package(
    name: "KilnBenchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "Kiln", path: ".."),
        // MallocInterposer (malloc counts) without the Swift-runtime interposer, which is not needed here.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .target(name: "BenchSupport", dependencies: [
            .product(name: "Benchmark", package: "benchmark"),
            .product(name: "Kiln", package: "Kiln"),
        ], swiftSettings: [.swiftLanguageMode(.v5)]),
        benchmarkTarget("Kernels"),
        benchmarkTarget("Compile"),
        benchmarkTarget("Models"),
        .executableTarget(name: "ConvEfficiency", dependencies: [
            "BenchSupport",
            .product(name: "Kiln", package: "Kiln"),
        ], swiftSettings: [.swiftLanguageMode(.v5)]),
    ]
)
