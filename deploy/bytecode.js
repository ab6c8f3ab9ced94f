'use strict';
// Ship Python bytecode in the artifact, so that a cold start loads modules instead of
// compiling every one it imports (docs/deployment.md, "Bytecode"). /var/task is read-only:
// without bytecode in the zip, every new container compiled SQLAlchemy, pydantic,
// Powertools and our code again.
//
// - SOURCE_DATE_EPOCH, set when packaging starts, makes the pip that
//   serverless-python-requirements spawns write hash-checked .pyc files (PEP 552): they
//   stay valid whatever modification times the zip gives the sources (timestamp-checked
//   ones would not). The slim patterns in serverless.yml keep them.
// - Before the artifact is built, our own packages are compiled the same way (forced:
//   compileall would keep a timestamp-checked file it finds up to date), with the
//   interpreter the requirements plugin uses (the runtime's version: the file names carry
//   it, and serverless.yml packages only cpython-311 files of our packages).

const { spawnSync } = require('child_process');

const SOURCES = ['handlers', 'domain', 'repositories', 'common', 'adapters'];

class Bytecode {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      // Packaging only (serverless offline's handlers do not see it).
      'before:package:initialize': () => {
        if (!process.env.SOURCE_DATE_EPOCH) {
          process.env.SOURCE_DATE_EPOCH = '315532800'; // 1980-01-01, the zip format's epoch
        }
      },
      'before:package:createDeploymentArtifacts': () => this.compile(),
    };
  }

  get python() {
    const custom = this.serverless.service.custom || {};
    const options = custom.pythonRequirements || {};
    return options.pythonBin || this.serverless.service.provider.runtime || 'python3';
  }

  compile() {
    const result = spawnSync(
      this.python,
      ['-m', 'compileall', '-q', '-f', '-j', '0', '--invalidation-mode', 'checked-hash', ...SOURCES],
      { cwd: this.serverless.config.servicePath, encoding: 'utf8' }
    );
    if (result.error || result.status !== 0) {
      throw new this.serverless.classes.Error(
        `compiling the functions' bytecode with ${this.python} failed: ` +
          `${result.error ? result.error.message : result.stderr || result.stdout}`
      );
    }
  }
}

module.exports = Bytecode;
