import FuzzSupport
import Kiln

/// Monitor files (nnabla's `index value` series and `index elapsed iterations total` timer lines): what a
/// resumed training run reads back to keep its earlier lines.
@_cdecl("LLVMFuzzerTestOneInput")
public func test(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    _ = try? MonitorLog.parse(bytes(data, size), name: "fuzz")
    return 0
}

@_cdecl("FuzzMonitor_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, test)
}
