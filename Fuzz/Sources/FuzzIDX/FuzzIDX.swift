import FuzzSupport
import Kiln

/// IDX image and label files (Fashion-MNIST's format), uncompressed.
@_cdecl("LLVMFuzzerTestOneInput")
public func test(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    _ = try? IDXFile.parse(bytes(data, size), name: "fuzz")
    return 0
}

@_cdecl("FuzzIDX_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, test)
}
