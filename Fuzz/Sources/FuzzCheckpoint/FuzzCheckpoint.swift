import Foundation
import FuzzSupport
import Kiln

/// Checkpoints as `--resume` reads them: the input is `checkpoint.json`, then a NUL byte, then the bytes of
/// the solver-state file it may name ("s.safetensors"). Both are written to a scratch directory, and the
/// checkpoint is read and restored into a small Adam-trained model whose parameter file is valid, so the
/// fuzzer reaches the state loader's checks.
let scratch: String = {
    let dir = NSTemporaryDirectory() + "kiln-fuzz-checkpoint-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let (_, parameters) = makeModel()
    let file = try? SafeTensors.encode(parameters.map { ($0.name, $0.variable.data) })
    _ = FileManager.default.createFile(atPath: dir + "/p.safetensors", contents: Data(file ?? []))
    return dir
}()

/// Two parameters and their Adam solver (made for each input: the solver's state is what a restore changes).
func makeModel() -> (solver: Adam, parameters: ParameterDictionary) {
    guard let w = try? Variable(shape: [2, 3], needGrad: true, name: "w"),
          let b = try? Variable(shape: [3], needGrad: true, name: "b") else { return (Adam(), ParameterDictionary()) }
    let parameters: ParameterDictionary = ["w": w, "b": b]
    let solver = Adam()
    solver.setParameters(parameters)
    return (solver, parameters)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func test(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    let split = input.firstIndex(of: 0) ?? input.count
    let checkpoint = Array(input[..<split])
    let state = split < input.count ? Array(input[(split + 1)...]) : []
    _ = FileManager.default.createFile(atPath: scratch + "/checkpoint.json", contents: Data(checkpoint))
    _ = FileManager.default.createFile(atPath: scratch + "/s.safetensors", contents: Data(state))
    if let c = try? Checkpoint.latest(in: scratch) {
        let model = makeModel()
        _ = try? c.restore(solvers: [model.solver], parameters: model.parameters)
    }
    return 0
}

@_cdecl("FuzzCheckpoint_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, test)
}
