'use strict';
// The parts of the production stack that the framework has no setting for
// (docs/production-stack.md). Listed after serverless-iam-roles-per-function.
//
// - Each function gets its IAM statements from custom.functionRoles (the roles plugin
//   then builds one role per function); a function missing there stops the packaging.
// - Functions outside the VPC (`vpc: false`) lose the VPC access policy the roles plugin
//   adds to every role when the provider has a VPC; the shared role, used by no function
//   any more, is removed.
// - The stage gets a default throttle, a tighter one on the keyless routes, and access
//   logs, through the deployment's StageDescription.
// - Every log group is kept when the stack is deleted or the group replaced.

const SHARED_ROLE = 'IamRoleLambdaExecution';

class Hardening {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      'before:package:compileFunctions': () => this.assignRoles(),
      'before:package:finalize': () => this.finish(),
    };
  }

  get custom() {
    return this.serverless.service.custom || {};
  }

  get resources() {
    return this.serverless.service.provider.compiledCloudFormationTemplate.Resources;
  }

  assignRoles() {
    const roles = this.custom.functionRoles || {};
    const service = this.serverless.service;
    for (const name of service.getAllFunctions()) {
      const fn = service.getFunction(name);
      if (fn.iamRoleStatements !== undefined) continue;
      if (!Array.isArray(roles[name])) {
        throw new this.serverless.classes.Error(
          `hardening: function "${name}" has no entry in custom.functionRoles ` +
            '(list what it may do, [] for nothing beyond its logs)'
        );
      }
      fn.iamRoleStatements = roles[name];
    }
  }

  finish() {
    const service = this.serverless.service;
    const naming = this.serverless.getProvider('aws').naming;
    for (const name of service.getAllFunctions()) {
      const fn = service.getFunction(name);
      const roleId = `${naming.getNormalizedFunctionName(name)}${SHARED_ROLE}`;
      if (fn.vpc === false && this.resources[roleId]) {
        this.resources[roleId].Properties.ManagedPolicyArns = [];
      }
      // The role is already a dependency through Fn::GetAtt (cfn-lint W3005).
      const lambda = this.resources[naming.getLambdaLogicalId(name)];
      if (lambda && Array.isArray(lambda.DependsOn)) {
        lambda.DependsOn = lambda.DependsOn.filter((id) => id !== roleId);
        if (!lambda.DependsOn.length) delete lambda.DependsOn;
      }
    }
    // Kept while anything still names it (a function, a policy attached to it).
    const references = [
      JSON.stringify({ 'Fn::GetAtt': [SHARED_ROLE, 'Arn'] }),
      JSON.stringify({ Ref: SHARED_ROLE }),
    ];
    const usesShared = Object.entries(this.resources).some(
      ([id, resource]) =>
        id !== SHARED_ROLE && references.some((ref) => JSON.stringify(resource).includes(ref))
    );
    if (!usesShared) delete this.resources[SHARED_ROLE];
    this.stageSettings(naming);
    for (const resource of Object.values(this.resources)) {
      if (resource.Type === 'AWS::Logs::LogGroup') {
        resource.DeletionPolicy = 'Retain';
        resource.UpdateReplacePolicy = 'Retain';
      }
    }
  }

  stageSettings(naming) {
    const settings = this.custom.hardening || {};
    const deployments = Object.values(this.resources).filter(
      (resource) => resource.Type === 'AWS::ApiGateway::Deployment'
    );
    if (!deployments.length) return;
    const stage = settings.stageThrottle || {};
    const keyless = settings.keylessThrottle || {};
    const description = {
      ThrottlingRateLimit: Number(stage.rateLimit),
      ThrottlingBurstLimit: Number(stage.burstLimit),
      TracingEnabled: true,
      MethodSettings: (settings.keylessRoutes || []).map((route) => ({
        // API Gateway's path encoding: "/" as "~1".
        ResourcePath: route.path.replace(/\//g, '~1'),
        HttpMethod: route.method,
        ThrottlingRateLimit: Number(keyless.rateLimit),
        ThrottlingBurstLimit: Number(keyless.burstLimit),
      })),
    };
    const logs = (this.serverless.service.provider.logs || {}).restApi;
    const logGroup = naming.getApiGatewayLogGroupLogicalId();
    if (logs && this.resources[logGroup]) {
      description.AccessLogSetting = {
        DestinationArn: { 'Fn::GetAtt': [logGroup, 'Arn'] },
        Format: logs.format,
      };
    }
    for (const deployment of deployments) {
      deployment.Properties.StageDescription = description;
    }
  }
}

module.exports = Hardening;
