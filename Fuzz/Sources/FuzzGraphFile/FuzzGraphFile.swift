import FuzzSupport
import Kiln

/// Graph files (`kiln-graph/1` JSON): parsing, validation, shape inference of every function, and
/// compiling the plan (no memory is allocated for it). Errors are expected; traps are findings.
@_cdecl("LLVMFuzzerTestOneInput")
public func test(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    _ = try? Parameters.isolated {
        let g = try GraphFile.load(bytes: input)
        _ = try Compiler.plan(g.outputs, .inference, context: Context(memoryBudget: 1 << 28))
        _ = try Compiler.plan(g.outputs, .training, context: Context(memoryBudget: 1 << 28))
    }
    return 0
}

@_cdecl("FuzzGraphFile_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, test)
}
