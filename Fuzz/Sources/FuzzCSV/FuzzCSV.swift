import FuzzSupport
@testable import KilnTraining

/// nnabla's CSV dataset layout (header row, values and file references).
@_cdecl("LLVMFuzzerTestOneInput")
public func test(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let text = String(decoding: bytes(data, size), as: UTF8.self)
    _ = try? CSVReader.parse(text, file: "fuzz")
    return 0
}

@_cdecl("FuzzCSV_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, test)
}
