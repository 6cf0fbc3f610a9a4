// swift-tools-version:6.0
// libFuzzer targets for Kiln's loaders: a nested package, so that the main package's build and `make test`
// never build them (they need `-sanitize=fuzzer`, which `make fuzz` passes). Each target hands libFuzzer's
// inputs to one loader; any crash, trap, leak or hang it finds becomes a regression test in KilnTests.
import PackageDescription

let fuzzTarget: (String) -> Target = { name in
    .executableTarget(name: name, dependencies: [.product(name: "Kiln", package: "Kiln"), "FuzzSupport"],
                      path: "Sources/\(name)")
}

let package = Package(
    name: "KilnFuzz",
    dependencies: [.package(name: "Kiln", path: "..")],
    targets: [.target(name: "FuzzSupport")]
        + ["FuzzGraphFile", "FuzzJSON", "FuzzSafeTensors", "FuzzIDX", "FuzzCSV", "FuzzGzip", "FuzzCheckpoint", "FuzzMonitor",
           "FuzzONNX", "FuzzNNP", "FuzzNNablaParameters"].map(fuzzTarget),
    swiftLanguageModes: [.v6]
)
