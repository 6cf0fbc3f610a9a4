import FuzzSupport
import Kiln

/// ONNX models: protobuf decoding, the importer (attributes, import-time folding, every operator mapping)
/// and compiling the imported graph's plan. Errors are expected; traps are findings.
@_cdecl("LLVMFuzzerTestOneInput")
public func test(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    _ = try? Context.with(Context(memoryBudget: 1 << 28)) {
        try Parameters.isolated {
            let r = try ONNXImporter.importGraph(try ONNXModel(bytes: input))
            _ = try Compiler.plan(r.graph.outputs, .inference, context: Context(memoryBudget: 1 << 28))
        }
    }
    return 0
}

@_cdecl("FuzzONNX_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, test)
}
