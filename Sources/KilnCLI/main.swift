import ArgumentParser
import Foundation
import Kiln

struct KilnCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kiln",
        abstract: "Define-then-run neural networks compiled ahead of time into memory-planned CPU plans.",
        version: KilnVersion.description,
        subcommands: [TrainCommand.self, PlanCommand.self, RunCommand.self, ConvertCommand.self, DemoCommand.self, ViewCommand.self, BenchCommand.self, ProfileCommand.self])
}

/// Turns Kiln errors into one clear line and exit code 1 instead of a stack trace.
func reportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch let e as KilnError {
        FileHandle.standardError.write(Data("kiln: error: \(e)\n".utf8))
        throw ExitCode(1)
    }
}

KilnCommand.main()
