/**
 * `appactive/mq`: unit-aware message producers and consumers (reference §A.3). The shared core is
 * driver-free; each adapter takes the client objects you created, so no driver is loaded by this module.
 */
export type {
  AmqpConsumerOptions,
  AmqpDeliveryInfo,
  AmqpProducerOptions,
  AmqpPublishOptions,
  PublishResult,
} from './amqplib.js'
export {
  AmqpConsumer,
  AmqpProducer,
  createAmqpConsumer,
  createAmqpProducer,
  ROUTING_KEY_HEADER,
} from './amqplib.js'
export type {
  AddressParts,
  BarrierPublish,
  ConsumeDecision,
  HoldOptions,
  HoldResult,
  MessageHeaderSource,
  MessageRoute,
  MqOutcome,
  PublishDecision,
  PublishRequest,
  ReadMessage,
  ResolvedHold,
  TopicConfig,
  TopicSettings,
  TopicType,
  WaitOutcome,
} from './core.js'
export {
  AddressTemplate,
  BARRIER_HEADER,
  BARRIER_KEY,
  BARRIER_PARTITIONS_HEADER,
  BarrierSender,
  barrierHeaders,
  DEAD_CODE_HEADER,
  DEAD_REASON_HEADER,
  decideConsume,
  decidePublish,
  decideWithHold,
  HoldGate,
  handlerFailure,
  isHoldError,
  KeyedSerial,
  MAX_HEADER_VALUE_LENGTH,
  MqMetrics,
  MSG_ID_HEADER,
  messageHeaders,
  newMessageId,
  ORIGIN_UNIT_HEADER,
  orderingKey,
  passBarrier,
  preparePublish,
  readBarrier,
  readMessageHeaders,
  resolveHold,
  runDecided,
  TopicTable,
} from './core.js'
export type {
  Checkpoint,
  CheckpointExecutor,
  CheckpointerOptions,
  CheckpointSample,
  CheckpointStore,
  FailoverReport,
  RpoBasis,
} from './failover.js'
export {
  Checkpointer,
  checkpointMysql2,
  checkpointPg,
  checkpointSqlite,
  checkpointTableSql,
  combineCheckpoints,
  DEFAULT_CHECKPOINT_TABLE,
  FailoverMetrics,
  isLateMessage,
  LATE_FAILOVER_VERSION_HEADER,
  LATE_REASON_HEADER,
  lateDestination,
  MemoryCheckpointStore,
  messageTime,
  onUnitEvacuated,
  SqlCheckpointStore,
  sequenceRpo,
  unitEvacuated,
} from './failover.js'
export type {
  ClaimOptions,
  InboxDialect,
  InboxExecutor,
  InboxResult,
  Mysql2Queryable,
  PgQueryable,
  SqliteQueryable,
} from './inbox.js'
export {
  claimMessage,
  claimMessageSync,
  DEFAULT_INBOX_TABLE,
  inboxClaimSql,
  inboxMysql2,
  inboxPg,
  inboxSqlite,
  inboxTableSql,
  MAX_INBOX_ID_LENGTH,
} from './inbox.js'
export type {
  KafkaConsumerOptions,
  KafkaDeliveryInfo,
  KafkaHoldOptions,
  KafkaProducerOptions,
  KafkaSendOptions,
  KafkaSendResult,
} from './kafkajs.js'
export {
  createKafkaConsumer,
  createKafkaProducer,
  DEAD_OFFSET_HEADER,
  DEAD_TOPIC_HEADER,
  KafkaConsumer,
  KafkaProducer,
} from './kafkajs.js'
export type {
  NatsConsumerOptions,
  NatsDeliveryInfo,
  NatsHoldOptions,
  NatsProducerOptions,
  NatsPublishOptions,
  NatsPublishResult,
} from './nats.js'
export {
  createNatsConsumer,
  createNatsProducer,
  DEAD_SUBJECT_HEADER,
  NatsConsumer,
  NatsProducer,
} from './nats.js'
export type {
  AmqpCheckpointer,
  AmqpCheckpointerOptions,
  AmqpFailover,
  AmqpFailoverOptions,
  AmqpStandbyFederationOptions,
  AmqpStandbyNameOptions,
  AmqpStandbyNames,
  DeclareAmqpStandbyOptions,
} from './standby-amqp.js'
export {
  amqpStandbyFederation,
  amqpStandbyNames,
  createAmqpCheckpointer,
  declareAmqpStandby,
  FAILOVER_MARKER_HEADER,
  federationQueueName,
  queueDepth,
  startAmqpFailover,
} from './standby-amqp.js'
export type {
  NatsCheckpointerOptions,
  NatsFailover,
  NatsFailoverOptions,
  NatsStandbyOptions,
  NatsStandbyState,
} from './standby-nats.js'
export {
  createNatsCheckpointer,
  ensureNatsStandby,
  natsStandbyState,
  startNatsFailover,
} from './standby-nats.js'
