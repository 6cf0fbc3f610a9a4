// swift-tools-version:6.0
import PackageDescription

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
        .target(name: "Kiln", dependencies: ["CBLAS", "CZlib"]),
        .target(name: "KilnGraphviz", dependencies: ["Kiln", "CGraphviz"]),
        .executableTarget(name: "KilnCLI", dependencies: [
            "Kiln", "KilnGraphviz",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "KilnTests", dependencies: ["Kiln"], resources: [.copy("Fixtures")]),
        .testTarget(name: "KilnGraphvizTests", dependencies: ["Kiln", "KilnGraphviz"]),
    ],
    swiftLanguageModes: [.v6]
)
