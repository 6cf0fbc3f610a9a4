import ArgumentParser
import Kiln

/// `--params`, on every command that takes a graph: trained weights (safetensors, names as the graph's
/// parameters) loaded over the graph's own.
struct ParametersOption: ParsableArguments {
    @Option(name: .customLong("params"), help: ArgumentHelp("Trained weights to load into the graph's parameters, by name: .safetensors, or nnabla's .h5 or .protobuf.",
                                                             valueName: "file"))
    var path: String?

    func validate() throws {
        if let path, ![".safetensors", ".h5", ".protobuf"].contains(where: { path.lowercased().hasSuffix($0) }) {
            throw ValidationError("--params takes a .safetensors, .h5 or .protobuf file, got '\(path)'")
        }
    }
}
