import FuzzSupport
import Kiln

/// safetensors parameter and solver-state files.
@_cdecl("LLVMFuzzerTestOneInput")
public func test(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    _ = try? SafeTensors.decode(bytes(data, size))
    return 0
}

@_cdecl("FuzzSafeTensors_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, test)
}
