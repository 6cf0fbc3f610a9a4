import FuzzSupport
import Kiln

/// nnabla's .nnp models: the zip archive, network.nntxt in protobuf's text format, the parameters inside,
/// and the network built from them. Errors are expected; traps are findings.
@_cdecl("LLVMFuzzerTestOneInput")
public func test(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    _ = try? Context.with(Context(memoryBudget: 1 << 28)) {
        try Parameters.isolated { _ = try NNPFile.load(bytes: input) }
    }
    return 0
}

@_cdecl("FuzzNNP_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, test)
}
