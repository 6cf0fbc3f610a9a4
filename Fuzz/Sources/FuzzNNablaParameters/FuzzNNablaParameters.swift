import FuzzSupport
import Kiln

/// nnabla's parameter files: .h5 (through libhdf5 on a memory image) and .protobuf. Errors are expected;
/// traps are findings.
@_cdecl("LLVMFuzzerTestOneInput")
public func test(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    _ = try? Context.with(Context(memoryBudget: 1 << 28)) {
        _ = try? NNablaParameterFile.read(bytes: input, format: .h5)
        _ = try? NNablaParameterFile.read(bytes: input, format: .protobuf)
    }
    return 0
}

@_cdecl("FuzzNNablaParameters_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, test)
}
