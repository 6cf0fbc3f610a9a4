import FuzzSupport
@testable import KilnTraining

/// Gzip streams (the compressed IDX files): decompression must stay bounded whatever the stream claims.
@_cdecl("LLVMFuzzerTestOneInput")
public func test(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    _ = try? Gzip.decompress(bytes(data, size), name: "fuzz")
    return 0
}

@_cdecl("FuzzGzip_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, test)
}
